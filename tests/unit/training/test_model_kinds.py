"""Training jobs of the `failure` and `anomaly` kinds: same job, gate and registry as `rul`, each kind's
own data, estimator, held-out metrics and gate rule (apps/training/kind_*.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from apps.common import ai4i
from apps.common.profiles import PROFILES, TURBOFAN
from apps.training.champions import ModelCatalog
from apps.training.history import fleet_lives
from apps.training.jobs import TrainingJob, TrainRequest
from apps.training.kind_failure import FailureTrainer
from apps.training.kinds import NoNewData
from apps.training.service import TrainingService
from apps.training.trainer import ONNX_TOLERANCE, onnx_predict
from tests.unit.training.registry_fakes import MemoryArchive, MemoryRegistry, Published
from vigil.history import ai4i_history

MILLING = PROFILES["milling"]
ANOMALY = PROFILES["turbofan-anomaly"]


def service(registry: MemoryRegistry, trees: int, archive: MemoryArchive | None = None) -> TrainingService:
    params = {"failure": {"n_estimators": trees}, "anomaly": {"n_estimators": trees}}
    return TrainingService(registry, Published(), TURBOFAN, archive=archive, kind_params=params)  # type: ignore[arg-type]


def job(profile: str, force: bool = False, source: str = "dataset") -> TrainingJob:
    return TrainingJob(request=TrainRequest(profile=profile, source=source, force=force))  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_a_failure_job_on_ai4i_registers_a_checked_classifier_and_the_gate_judges_log_loss() -> None:
    registry = MemoryRegistry()
    first = await service(registry, 20).run(job("milling"))
    assert first.status == "succeeded", first.error
    card = first.card
    assert card is not None and card.kind == "failure" and card.profile == "milling"
    assert card.unused_features == ["age_cycles"]  # held constant while fitting: drift leaves it out
    assert card.features is not None and card.features.window == MILLING.window
    assert card.onnx_max_abs_diff is not None and card.onnx_max_abs_diff <= ONNX_TOLERANCE
    m = card.metrics
    assert m["roc_auc"] > 0.85 and m["threshold"] == 0.5 and m["rows"] == 2000 and m["positives"] == 39
    assert m["failures_OSF"] + m["failures_PWF"] + m["failures_TWF"] >= 30  # the held-out types
    assert first.promoted and first.held_out_runs == 2000 and registry.champion == 1
    # Two trees: a worse log-loss on the same held-out readings, so the champion stays.
    worse = await service(registry, 2).run(job("milling"))
    decision = registry.decisions_[2]
    assert worse.promoted is False and registry.champion == 1
    assert decision["candidate"]["log_loss"] > decision["champion"]["log_loss"]
    assert "log-loss" in decision["reason"]
    forced = await service(registry, 2).run(job("milling", force=True))
    assert forced.promoted and registry.champion == 3


@pytest.mark.asyncio
async def test_a_failure_job_from_the_archive_labels_each_lifes_failure() -> None:
    history = ai4i_history(ai4i.DEFAULT_FILE, MILLING, datetime(2026, 1, 1, tzinfo=UTC))
    archive = MemoryArchive()
    archive.histories = {b.equipment_id: b for b in history.blocks}
    archive.events = list(history.events)
    data = FailureTrainer().archive(fleet_lives(archive.histories, archive.events), MILLING)
    assert sum(int(s.labels.sum()) for s in data.fit) == 339  # one per failure event
    assert all(s.labels[:-1].sum() == 0 for s in data.fit)  # ... at its life's last reading
    assert 0 < data.n_held_out < 10_000 / 3
    registry = MemoryRegistry()
    done = await service(registry, 20, archive).run(job("milling", source="archive"))
    assert done.status == "succeeded", done.error
    assert done.runs == 340 and done.new_runs == 340 and done.card is not None
    assert done.card.metrics["roc_auc"] > 0.8
    again = await service(registry, 20, archive).run(job("milling", source="archive"))
    assert again.status == "no_new_data"


@pytest.mark.asyncio
async def test_a_failure_job_without_failures_in_the_archive_says_so() -> None:
    history = ai4i_history(ai4i.DEFAULT_FILE, MILLING, datetime(2026, 1, 1, tzinfo=UTC))
    archive = MemoryArchive()
    archive.histories = {b.equipment_id: b for b in history.blocks}  # readings, no events
    done = await service(MemoryRegistry(), 5, archive).run(job("milling", source="archive"))
    assert done.status == "no_new_data" and "no failure of a milling machine" in (done.message or "")
    with pytest.raises(NoNewData):
        FailureTrainer().archive([], MILLING)


@pytest.mark.asyncio
async def test_an_anomaly_job_learns_thresholds_at_the_false_alarm_rate_on_held_out_machines() -> None:
    registry = MemoryRegistry()
    done = await service(registry, 30).run(job("turbofan-anomaly"))
    assert done.status == "succeeded", done.error
    card = done.card
    assert card is not None and card.kind == "anomaly" and card.alert_thresholds is not None
    warning, critical = card.alert_thresholds["warning"], card.alert_thresholds["critical"]
    assert warning <= critical and card.metrics["threshold"] == warning
    assert card.metrics["false_alarm_rate"] <= 0.01  # ANOMALY's rate, on held-out healthy windows
    assert card.metrics["separation_error"] < 0.1 and card.metrics["detection_rate"] > 0.5
    assert card.onnx_max_abs_diff is not None and card.onnx_max_abs_diff <= ONNX_TOLERANCE
    assert card.features is not None and card.features.window == ANOMALY.window
    assert done.held_out_runs == 20 and card.n_train_units == 80
    # Age is held constant while fitting, so the forest never splits on it: an old healthy machine
    # scores as a young one.
    model = await registry.get(card.name, card.version)
    assert model is not None
    X = np.random.default_rng(1).normal(size=(50, len(card.feature_names)))
    older = X.copy()
    older[:, card.feature_names.index("age_cycles")] += 500.0
    assert np.array_equal(onnx_predict(model.onnx, X), onnx_predict(model.onnx, older))


@pytest.mark.asyncio
async def test_too_few_failures_to_calibrate_is_a_failed_job_that_says_why() -> None:
    history = ai4i_history(ai4i.DEFAULT_FILE, MILLING, datetime(2026, 1, 1, tzinfo=UTC))
    archive = MemoryArchive()
    archive.histories = {b.equipment_id: b for b in history.blocks}
    archive.events = list(history.events)[:2]  # two failures: one life held out or not, never 3 to fit
    done = await service(MemoryRegistry(), 5, archive).run(job("milling", source="archive"))
    assert done.status == "failed" and "at least 3 failures to fit and 1 held out" in (done.error or "")


@pytest.mark.asyncio
async def test_a_failure_champions_drift_is_measured_on_the_archives_running_mill() -> None:
    """The archive fallback of drift reads any profile's channels (not only C-MAPSS's)."""
    registry = MemoryRegistry()
    await service(registry, 5).run(job("milling"))
    history = ai4i_history(ai4i.DEFAULT_FILE, MILLING, datetime(2026, 1, 1, tzinfo=UTC))
    lives = fleet_lives({b.equipment_id: b for b in history.blocks}, history.events)
    catalog = ModelCatalog(registry, Published(), {MILLING.model_name: MILLING})  # type: ignore[arg-type]
    report = await catalog.compute_drift(MILLING.model_name, lives, 50)
    assert report.machines == 1 and {f.name for f in report.features} >= {"torque__mean", "tool_wear__last"}
    # the classifier never splits on the age: its PSI (machines age) is left out, named as ignored
    assert report.ignored == ["age_cycles"] and "age_cycles" not in {f.name for f in report.features}
