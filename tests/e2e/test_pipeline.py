"""The equipment pipeline end to end through localdapr: real C-MAPSS FD001 units are replayed into
ingestion; EquipmentActors compute features and call inference (ONNX); alerts reach alerting.

Runs on the embedded profile (SQLite state, in-memory pub/sub) and on the Redis profile.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from dapr.actor import ActorId, ActorProxy

from apps.common import cmapss
from apps.common.actor_interface import EquipmentActorInterface
from apps.common.names import EQUIPMENT_ACTOR_TYPE
from localdapr.testing import wait_until
from tests.e2e.platform import Platform, running_platform, wait_model_ready, write_components

pytestmark = pytest.mark.e2e

UNITS = (1, 2, 3, 4, 5)
E2E_REDIS_DB = 13  # flushed at the start of the Redis run; nothing else uses it


def reading(equipment_id: str, unit_row: Any) -> dict[str, Any]:
    return {
        "equipment_id": equipment_id,
        "profile": "turbofan",
        "timestamp": datetime.now(UTC).isoformat(),
        "seq": int(unit_row[1]),
        "values": cmapss.row_values(unit_row),
    }


def fleet_batches(
    prefix: str, units: tuple[int, ...], cycles_per_batch: int = 10, first: int = 1, last: int | None = None
) -> Iterator[list[dict[str, Any]]]:
    """All units advance together, cycle by cycle, `cycles_per_batch` cycles per request."""
    data = cmapss.load_train()
    longest = max(len(data[u]) for u in units)
    end = min(longest, last) if last else longest
    for start in range(first, end + 1, cycles_per_batch):
        batch = []
        for cycle in range(start, min(start + cycles_per_batch, end + 1)):
            for u in units:
                if cycle <= len(data[u]):
                    batch.append(reading(f"{prefix}{u:03d}", data[u][cycle - 1]))
        yield batch


def post(platform: Platform, batch: Any) -> httpx.Response:
    return httpx.post(f"{platform.url('ingestion')}/v1/readings", json=batch, timeout=60)


def actor(equipment_id: str) -> Any:
    return ActorProxy.create(EQUIPMENT_ACTOR_TYPE, ActorId(equipment_id), EquipmentActorInterface)


@pytest.fixture(scope="module", params=["embedded", "redis"])
def platform(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp(f"e2e-{request.param}")
    redis = None
    if request.param == "redis":
        redis = request.getfixturevalue("redis_url")
        import redis as redis_client  # the test may talk to Redis directly; the apps never do

        host, port = redis.split(":")
        redis_client.Redis(host=host, port=int(port), db=E2E_REDIS_DB).flushdb()
    components = write_components(tmp / "components", request.param, redis, E2E_REDIS_DB)
    env = {"VIGIL_TRAINING_N_ESTIMATORS": "120", "VIGIL_EQUIPMENT_HEALTH_PUBLISH_SECONDS": "0"}
    with running_platform(components, tmp, env) as p:
        yield p


@pytest.fixture
def actor_env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """ActorProxy from the test talks to the equipment app's sidecar."""
    monkeypatch.setenv("DAPR_HTTP_PORT", str(platform.apps["equipment"].sidecar.http_port))


async def history(equipment_id: str) -> list[dict[str, Any]]:
    return json.loads(await actor(equipment_id).GetHistory(1000))


async def health(equipment_id: str) -> dict[str, Any]:
    return json.loads(await actor(equipment_id).GetHealth())


def first_sustained(points: list[dict[str, Any]], threshold: float, n: int = 3) -> int | None:
    """The seq at which `n` consecutive predictions were at or below threshold (when the alert fires)."""
    run = 0
    for p in points:
        run = run + 1 if p["predicted_rul"] <= threshold else 0
        if run == n:
            return int(p["seq"])
    return None


async def test_replay_raises_warning_then_critical_before_failure(
    platform: Platform, actor_env: None
) -> None:
    prefix = f"eng-{uuid.uuid4().hex[:6]}-"
    total = 0
    for batch in fleet_batches(prefix, UNITS):
        resp = post(platform, batch)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["rejected"] == [] and body["accepted"] == len(batch)
        total += len(batch)
    data = cmapss.load_train()
    assert total == sum(len(data[u]) for u in UNITS)
    for u in UNITS:
        eid, last_cycle = f"{prefix}{u:03d}", len(data[u])
        points = await history(eid)
        assert points and points[-1]["seq"] == last_cycle
        warn, crit = first_sustained(points, 50), first_sustained(points, 20)
        assert warn is not None and crit is not None, f"{eid}: no sustained low RUL: {points[-10:]}"
        assert warn < crit < last_cycle, (
            f"{eid}: warning at {warn}, critical at {crit}, failure at {last_cycle}"
        )
        status = (await health(eid))["status"]
        assert status == "critical"

    def alerts_for(eid: str) -> list[dict[str, Any]]:
        resp = httpx.get(f"{platform.url('alerting')}/v1/alerts", params={"equipment_id": eid}, timeout=10)
        return [a for a in resp.json() if a["kind"] == "rul_low"]

    for u in UNITS:
        eid = f"{prefix}{u:03d}"
        alerts = wait_until(
            lambda eid=eid: [a for a in alerts_for(eid) if a["severity"] == "critical"],
            timeout=30,
            what=f"critical alert for {eid} in alerting",
        )
        assert alerts[0]["state"] in ("open", "acknowledged")
        assert alerts[0]["top_sensors"], "an alert explains which sensors deviate"


async def test_resending_a_batch_changes_nothing(platform: Platform, actor_env: None) -> None:
    prefix = f"dup-{uuid.uuid4().hex[:6]}-"
    batches = list(fleet_batches(prefix, (1, 2), last=40))
    for batch in batches:
        assert post(platform, batch).json()["accepted"] == len(batch)
    before = [await health(f"{prefix}{u:03d}") for u in (1, 2)]
    again = post(platform, batches[1]).json()
    assert again["accepted"] == 0 and again["duplicates"] == len(batches[1])
    after = [await health(f"{prefix}{u:03d}") for u in (1, 2)]
    for b, a in zip(before, after, strict=True):
        assert a["readings_applied"] == b["readings_applied"] == 40
        assert a["last_seq"] == b["last_seq"] and a["predicted_rul"] == b["predicted_rul"]
        assert a["duplicates"] == b["duplicates"] + len(batches[1]) // 2


async def test_bad_readings_are_rejected_and_dead_lettered(platform: Platform, actor_env: None) -> None:
    prefix = f"bad-{uuid.uuid4().hex[:6]}-"
    good = next(fleet_batches(prefix, (7,), cycles_per_batch=2))
    unknown_sensor = {**good[0], "seq": 100, "values": {**good[0]["values"], "sensor_99": 1.0}}
    future = {**good[0], "seq": 101, "timestamp": (datetime.now(UTC) + timedelta(hours=2)).isoformat()}
    bad_id = {**good[0], "equipment_id": "no spaces allowed!"}
    not_finite = {**good[0], "seq": 102, "values": {**good[0]["values"], "sensor_2": math.inf}}
    batch = [good[0], unknown_sensor, future, bad_id, good[1], not_finite]
    resp = httpx.post(
        f"{platform.url('ingestion')}/v1/readings",
        timeout=30,
        content=json.dumps(batch).replace("Infinity", "1e999"),
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["accepted"] == 2
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert set(reasons) == {1, 2, 3, 5}
    assert "sensor_99" in reasons[1] and "future" in reasons[2] and "equipment_id" in reasons[3]
    assert "sensor_2" in reasons[5]
    assert (await health(f"{prefix}007"))["readings_applied"] == 2

    def dead_letters() -> list[dict[str, Any]]:
        resp = httpx.get(f"{platform.url('alerting')}/v1/dead-letters", timeout=10)
        return [d for d in resp.json() if prefix in json.dumps(d)]

    letters = wait_until(lambda: len(dead_letters()) >= 3 and dead_letters(), timeout=30, what="dead letters")
    assert {d["index"] for d in letters} >= {1, 2, 5}
    malformed = httpx.post(
        f"{platform.url('ingestion')}/v1/readings",
        content=b"{not json",
        headers={"content-type": "application/json"},
        timeout=10,
    )
    assert malformed.status_code == 400 and "malformed JSON" in malformed.json()["detail"]


async def test_inference_outage_loses_no_readings(platform: Platform, actor_env: None) -> None:
    prefix = f"out-{uuid.uuid4().hex[:6]}-"
    units = (8, 9)
    eids = [f"{prefix}{u:03d}" for u in units]
    for batch in fleet_batches(prefix, units, last=60):
        assert post(platform, batch).json()["accepted"] == len(batch)
    assert not any([(await health(e))["prediction_stale"] for e in eids])
    inference = platform.apps["inference"]
    inference.stop_app()
    try:
        for batch in fleet_batches(prefix, units, first=61, last=90):
            resp = post(platform, batch)
            assert resp.status_code == 200 and resp.json()["accepted"] == len(batch)
        for e in eids:
            h = await health(e)
            assert h["readings_applied"] == 90 and h["prediction_stale"] is True
    finally:
        inference.start_app()
    wait_model_ready(platform, timeout=60)
    batches = list(fleet_batches(prefix, units, first=91, last=100))
    for batch in batches:
        assert post(platform, batch).json()["accepted"] == len(batch)

    async def recovered() -> bool:
        # The equipment sidecar's circuit breaker may still be open for a few seconds after the restart;
        # re-sending the last batch (all duplicates) makes a stale actor try inference again.
        post(platform, batches[-1])
        return not any([(await health(e))["prediction_stale"] for e in eids])

    for _ in range(60):
        if await recovered():
            break
        await asyncio.sleep(0.5)
    for e in eids:
        h = await health(e)
        assert h["readings_applied"] == 100 and h["prediction_stale"] is False
        assert (await history(e))[-1]["seq"] == 100
