"""The `failure` and `anomaly` model kinds end to end through the live platform: a model trained by the
training app's job API (`POST /v1/train`, `GET /v1/jobs/{id}`), promoted and served by inference, machines
of its profile replayed through ingestion, the EquipmentActors predicting with the served card's spec
(and, for anomaly, its learnt thresholds), alerting showing what they raised.

- milling (AI4I 2020, `failure`): a mill whose readings run into AI4I's heat-dissipation failures opens
  a failure-probability alert; a mill's first readings do not.
- turbofan-anomaly (C-MAPSS FD001, `anomaly`, no labels): a held-out engine run to failure opens an
  anomaly alert near its end; two engines early in life stay ok. And on day one, with no failure
  recorded, an anomaly model trains from the archive the fleet's first readings filled.

Every prediction each actor recorded equals the offline one (the registry's ONNX fed the shared pipeline
with the card's spec) within 1e-6. Small models (30 trees) keep each test within tens of seconds.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pytest
from dapr.aio.clients import DaprClient

from apps.common import ai4i, cmapss
from apps.common.archivestore import DaprArchive
from apps.common.features import reading_columns, reading_features
from apps.common.profiles import PROFILES, AnomalyThresholds, ProbabilityThresholds
from apps.training.quality import reading_rows
from apps.training.trainer import onnx_predict
from localdapr.testing import wait_until
from tests.e2e.fleet_replay import actor_call, champion, served_card
from tests.e2e.platform import Platform, alerts_of, start_platform, training_job, write_components

pytestmark = pytest.mark.e2e

MILLING = PROFILES["milling"]
ANOMALY = PROFILES["turbofan-anomaly"]
# AI4I rows (0-based) 4090-4121 run into the file's cluster of heat-dissipation failures and stop at its
# last one (UDI 4122), so the alert is still open; rows 0-39 are the mill's first, unremarkable workpieces.
FAILING_ROWS = slice(4090, 4122)
HEALTHY_ROWS = slice(0, 40)
DEGRADED_UNIT = 5  # FD001 training engine 5: held out of the anomaly fit, run to its failure
YOUNG_UNITS = (1, 14)  # FD001 test engines 1 and 14: cut after 31 and 46 cycles, early in life


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    """The platform without a turbofan RUL model: the tests train what they serve."""
    tmp = tmp_path_factory.mktemp("model-kinds")
    components = write_components(tmp / "components", "embedded")
    env = {
        "VIGIL_TRAINING_TRAIN_IF_NO_CHAMPION": "false",
        "VIGIL_TRAINING_FAILURE_N_ESTIMATORS": "30",
        "VIGIL_TRAINING_ANOMALY_N_ESTIMATORS": "30",
        "VIGIL_EQUIPMENT_HEALTH_PUBLISH_SECONDS": "0",
    }
    p = start_platform(components, tmp, env)
    try:
        yield p
    finally:
        p.stop()


@pytest.fixture
def actor_env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAPR_HTTP_PORT", str(platform.apps["equipment"].sidecar.http_port))


def train(platform: Platform, body: dict[str, Any]) -> dict[str, Any]:
    """A job through training's API, followed to its end; its record, which must say it succeeded."""
    job = training_job(platform, body)
    assert job["status"] == "succeeded", job
    return job


def wait_served(platform: Platform, name: str, version: int) -> None:
    def serving() -> bool:
        try:
            return served_card(platform, name).version == version
        except httpx.HTTPError:
            return False

    wait_until(serving, timeout=60, interval=0.5, what=f"inference serving {name} v{version}")


def send(platform: Platform, readings: list[dict[str, Any]]) -> None:
    resp = httpx.post(f"{platform.url('ingestion')}/v1/readings", json=readings, timeout=60)
    assert resp.status_code == 200 and resp.json()["accepted"] == len(readings), resp.text


def reading(eid: str, profile: str, seq: int, values: dict[str, float]) -> dict[str, Any]:
    return {
        "equipment_id": eid,
        "profile": profile,
        "timestamp": datetime.now(UTC).isoformat(),
        "seq": seq,
        "values": values,
    }


def history(platform: Platform, eid: str, last_seq: int) -> list[dict[str, Any]]:
    """The actor's predictions, once it has predicted every reading up to `last_seq`."""

    def done() -> bool:
        health = actor_call(platform, eid, "GetHealth")
        return health["last_seq"] == last_seq and health["predictions_owed"] == 0

    wait_until(done, timeout=60, interval=0.5, what=f"{eid} predicted up to seq {last_seq}")
    return list(actor_call(platform, eid, "GetHistory", 100_000))


def longest_run(flags: np.ndarray) -> int:
    best = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        best = max(best, run)
    return best


def open_alerts(platform: Platform, eid: str) -> list[dict[str, Any]]:
    return [a for a in alerts_of(platform, eid, "rul_low") if a["state"] == "open"]


def test_a_failure_model_trained_through_the_api_alerts_a_mill_running_into_failures(
    platform: Platform, actor_env: None
) -> None:
    job = train(platform, {"profile": "milling", "source": "dataset"})
    card = job["card"]
    assert card["kind"] == "failure" and card["name"] == MILLING.model_name and job["promoted"]
    assert card["metrics"]["roc_auc"] > 0.85 and card["onnx_max_abs_diff"] <= 1e-4
    assert job["gate"]["reason"] == "no champion yet"
    wait_served(platform, MILLING.model_name, card["version"])
    model = champion(platform, MILLING.model_name)
    thresholds = MILLING.thresholds
    assert isinstance(thresholds, ProbabilityThresholds)

    data = ai4i.load()
    columns = reading_columns(MILLING)
    run = f"mill-{uuid.uuid4().hex[:6]}"
    machines = {f"{run}-failing": FAILING_ROWS, f"{run}-healthy": HEALTHY_ROWS}
    for eid, rows in machines.items():
        batch = [
            reading(eid, MILLING.name, int(seq), {c: float(data.values[c][i]) for c in columns})
            for i, seq in zip(range(rows.start, rows.stop), data.seq[rows], strict=True)
        ]
        for start in range(0, len(batch), 10):  # ten workpieces per request, as a cell controller would
            send(platform, batch[start : start + 10])

    offline: dict[str, np.ndarray] = {}
    for eid, rows in machines.items():
        assert model.card.features is not None
        offline[eid] = onnx_predict(
            model.onnx, reading_features(data.rows(columns)[rows], MILLING, model.card.features, pad=True)
        )
        points = history(platform, eid, int(data.seq[rows][-1]))
        assert [p["seq"] for p in points] == [int(s) for s in data.seq[rows]], "one prediction per reading"
        assert {p["model_version"] for p in points} == {model.card.version}
        np.testing.assert_allclose([p["predicted_rul"] for p in points], offline[eid], rtol=0, atol=1e-6)

    failing, healthy = machines
    high = offline[failing] >= thresholds.warning_probability
    assert longest_run(high) >= thresholds.consecutive, "the model must see the failures coming"
    (alert,) = wait_until(lambda: open_alerts(platform, failing), timeout=30, what="a failure alert")
    assert "failure probability" in alert["message"] and alert["model_version"] == model.card.version
    decided = alert["reading"]
    assert offline[failing][list(data.seq[FAILING_ROWS]).index(decided["seq"])] == pytest.approx(
        decided["predicted_rul"], abs=1e-6
    )
    assert (offline[healthy] < thresholds.warning_probability).all()
    assert actor_call(platform, healthy, "GetHealth")["status"] == "ok"
    assert alerts_of(platform, healthy, "rul_low") == []


def test_an_anomaly_model_needs_no_labels_and_alerts_only_the_degraded_engine(
    platform: Platform, actor_env: None
) -> None:
    job = train(platform, {"profile": "turbofan-anomaly", "source": "dataset", "dataset": "FD001"})
    card = job["card"]
    assert card["kind"] == "anomaly" and job["promoted"]
    learnt = card["alert_thresholds"]
    assert card["metrics"]["false_alarm_rate"] <= 0.01 and learnt["warning"] <= learnt["critical"]
    wait_served(platform, ANOMALY.model_name, card["version"])
    model = champion(platform, ANOMALY.model_name)
    settings = ANOMALY.thresholds
    assert isinstance(settings, AnomalyThresholds)

    engines = {
        f"deg-{uuid.uuid4().hex[:6]}": cmapss.load_train()[DEGRADED_UNIT],
        **{f"young-{uuid.uuid4().hex[:6]}-{u}": cmapss.load_test()[u] for u in YOUNG_UNITS},
    }
    longest = max(len(t) for t in engines.values())
    for start in range(0, longest, 30):  # the engines advance together, 30 cycles per request
        batch = [
            reading(eid, ANOMALY.name, int(row[1]), cmapss.row_values(row))
            for eid, traj in engines.items()
            for row in traj[start : start + 30]
        ]
        if batch:
            send(platform, batch)

    offline: dict[str, np.ndarray] = {}
    for eid, traj in engines.items():
        assert model.card.features is not None
        rows = reading_rows(traj, ANOMALY)
        offline[eid] = onnx_predict(
            model.onnx, reading_features(rows, ANOMALY, model.card.features, traj[:, 1], pad=True)
        )
        points = history(platform, eid, int(traj[-1, 1]))
        assert [p["seq"] for p in points] == [int(c) for c in traj[:, 1]]
        np.testing.assert_allclose([p["predicted_rul"] for p in points], offline[eid], rtol=0, atol=1e-6)

    degraded, *young = engines
    assert longest_run(offline[degraded] > learnt["warning"]) >= settings.consecutive
    (alert,) = wait_until(lambda: open_alerts(platform, degraded), timeout=30, what="an anomaly alert")
    assert "anomaly score" in alert["message"] and alert["reading"]["predicted_rul"] > learnt["warning"]
    # it opened near the end of life, not in the engine's first half
    assert alert["reading"]["seq"] > len(engines[degraded]) / 2
    for eid in young:
        assert longest_run(offline[eid] > learnt["warning"]) < settings.consecutive
        assert actor_call(platform, eid, "GetHealth")["status"] == "ok"
        assert alerts_of(platform, eid, "rul_low") == []


def test_an_anomaly_model_trains_on_the_fleets_first_readings_alone(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Day one: machines send readings, nobody recorded a failure; the archive they fill is enough for
    an anomaly model (source `archive`), thresholds included. With no run to failure held out the gate
    cannot tell it from a champion (separation error 1.0 for both): promoted only if it is the first."""
    run = uuid.uuid4().hex[:6]
    test = cmapss.load_test()
    engines = {f"day1-{run}-{u:03d}": test[u][:80] for u in range(3, 13)}  # units 5 and 10 held out
    for start in range(0, 80, 40):
        send(platform, [reading(eid, ANOMALY.name, int(row[1]), cmapss.row_values(row))
                        for eid, traj in engines.items() for row in traj[start : start + 40]])  # fmt: skip
    sent = sum(len(t) for t in engines.values())
    archiver = platform.apps["archiver"]
    monkeypatch.setenv("DAPR_HTTP_PORT", str(platform.apps["training"].sidecar.http_port))

    def archived() -> bool:
        httpx.post(f"{archiver.url}/v1/archive/flush", timeout=60)

        async def read() -> int:
            async with DaprClient(address=platform.apps["training"].sidecar.grpc_address) as client:
                found = await DaprArchive(client).read(list(engines))
                return sum(len(h.seq) for h in found.histories.values())

        return asyncio.run(read()) >= sent

    wait_until(archived, timeout=120, interval=1.0, what="the fleet's readings in the archive")
    before = httpx.get(f"{platform.url('training')}/v1/models/{ANOMALY.model_name}", timeout=10).json()
    job = train(platform, {"profile": "turbofan-anomaly", "source": "archive"})
    card = job["card"]
    assert card["kind"] == "anomaly" and card["alert_thresholds"]["warning"] > 0
    assert job["runs"] >= len(engines) and job["held_out_runs"] >= 2  # lives, not runs to failure
    assert card["metrics"]["false_alarm_rate"] <= ANOMALY.thresholds.false_alarm_rate  # type: ignore[union-attr]
    assert job["gate"]["candidate"]["separation_error"] == 1.0  # no failure anywhere to tell by
    assert job["promoted"] is (before["champion"] is None)
