"""The training job's promotion gate: held-out training engines decide, the decision is kept."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apps.common import cmapss
from apps.common.contracts import ModelCard
from apps.common.profiles import TURBOFAN
from apps.common.registry import ModelVersion
from apps.training.service import HELD_OUT_EVERY, TrainingService, split_held_out

TINY = {"n_estimators": 5, "max_depth": 2}


class MemoryRegistry:
    def __init__(self) -> None:
        self.models: dict[int, ModelVersion] = {}
        self.champion: int | None = None
        self.decisions: dict[int, dict[str, Any]] = {}

    async def next_version(self, name: str) -> int:
        return len(self.models) + 1

    async def register(self, card: ModelCard, onnx: bytes) -> int:
        self.models[card.version] = ModelVersion(card, onnx)
        return card.version

    async def champion_version(self, name: str) -> int | None:
        return self.champion

    async def get(self, name: str, version: int) -> ModelVersion | None:
        return self.models.get(version)

    async def promote(self, name: str, version: int) -> None:
        self.champion = version

    async def record_decision(self, name: str, version: int, decision_json: str) -> None:
        self.decisions[version] = json.loads(decision_json)


class NoPublisher:
    async def publish(self, topic: str, event: Any) -> None:
        return None


def test_held_out_engines_are_fixed_by_id() -> None:
    fit, held = split_held_out(cmapss.load_train())
    assert sorted(held) == list(range(HELD_OUT_EVERY, 101, HELD_OUT_EVERY))
    assert not set(fit) & set(held) and len(fit) + len(held) == 100


@pytest.mark.asyncio
async def test_first_promoted_then_a_worse_candidate_refused_unless_forced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 20 training engines (4 held out) and 10 test engines keep three jobs within a few seconds.
    train, test = cmapss.load_train(), cmapss.load_test()
    monkeypatch.setattr(cmapss, "load_train", lambda: {u: train[u] for u in range(1, 21)})
    monkeypatch.setattr(cmapss, "load_test", lambda: {u: test[u] for u in range(1, 11)})
    registry = MemoryRegistry()
    good = TrainingService(registry, NoPublisher(), TURBOFAN, params=TINY)  # type: ignore[arg-type]
    first = await good.run()
    assert first.status == "succeeded", first.error
    assert first.promoted and registry.champion == 1 and registry.decisions[1]["reason"] == "no champion yet"
    # One stump: clearly worse on the held-out engines, so the gate keeps the champion.
    worse = TrainingService(registry, NoPublisher(), TURBOFAN, params={"n_estimators": 1, "max_depth": 1})  # type: ignore[arg-type]
    second = await worse.run()
    assert second.status == "succeeded" and second.promoted is False and registry.champion == 1
    decision = registry.decisions[2]
    assert (
        decision["champion_version"] == 1
        and decision["candidate"]["rmse_capped"] > decision["champion"]["rmse_capped"]
    )
    forced = await worse.run(force=True)
    assert forced.promoted and registry.champion == 3 and registry.decisions[3]["forced"]
