"""The training job's promotion gate: held-out training engines decide, the decision is kept, and every
change of champion is in the champion history."""

from __future__ import annotations

import pytest

from apps.common import cmapss
from apps.common.profiles import TURBOFAN
from apps.training.jobs import TrainingJob, TrainRequest
from apps.training.runs import HELD_OUT_EVERY
from apps.training.service import TrainingService, split_held_out
from tests.unit.training.registry_fakes import MemoryRegistry, Published

TINY = {"n_estimators": 5, "num_leaves": 4}


def dataset_job(force: bool = False) -> TrainingJob:
    return TrainingJob(trigger="cli", request=TrainRequest(source="dataset", force=force))


def test_held_out_engines_are_fixed_by_id() -> None:
    fit, held = split_held_out(cmapss.load_train())
    assert sorted(held) == list(range(HELD_OUT_EVERY, 101, HELD_OUT_EVERY))
    assert not set(fit) & set(held) and len(fit) + len(held) == 100


@pytest.mark.asyncio
async def test_first_promoted_then_a_worse_candidate_refused_unless_forced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 20 training engines (4 held out) keep three jobs within a few seconds.
    train = cmapss.load_train()
    monkeypatch.setattr(cmapss, "load_train", lambda subset="FD001": {u: train[u] for u in range(1, 21)})
    registry = MemoryRegistry()
    good = TrainingService(registry, Published(), TURBOFAN, params=TINY)  # type: ignore[arg-type]
    first = await good.run(dataset_job())
    assert first.status == "succeeded", first.error
    assert first.promoted and registry.champion == 1 and registry.decisions_[1]["reason"] == "no champion yet"
    assert registry.seen[1] == [f"fd001-{u:03d}#0" for u in range(1, 21)]  # the runs it saw, by name
    # One stump: clearly worse on the held-out engines, so the gate keeps the champion.
    worse = TrainingService(registry, Published(), TURBOFAN, params={"n_estimators": 1, "num_leaves": 2})  # type: ignore[arg-type]
    second = await worse.run(dataset_job())
    assert second.status == "succeeded" and second.promoted is False and registry.champion == 1
    decision = registry.decisions_[2]
    assert (
        decision["champion_version"] == 1
        and decision["candidate"]["rmse_capped"] > decision["champion"]["rmse_capped"]
    )
    forced = await worse.run(dataset_job(force=True))
    assert forced.promoted and registry.champion == 3 and registry.decisions_[3]["forced"]
    assert [(c["version"], c["previous"], c["action"]) for c in registry.history] == [
        (1, None, "gate"),
        (3, 1, "gate"),
    ]
    assert forced.card is not None and forced.card.feature_reference  # the drift reference is in the card
    assert len(forced.card.feature_reference) == len(forced.card.feature_names)
