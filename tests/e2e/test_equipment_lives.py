"""A maintenance event through the whole platform: the machine's actor starts a new life. Its open alert
ends as resolved with the event as the reason, its window and age start again (health: the next life,
a small age) and the readings of the new life are predicted again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from dapr.actor import ActorId, ActorProxy

from apps.common import cmapss
from apps.common.actor_interface import EquipmentActorInterface
from apps.common.names import EQUIPMENT_ACTOR_TYPE
from localdapr.testing import wait_until
from tests.e2e.platform import Platform, alerts_of, running_platform, write_components

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("e2e-lives")
    env = {"VIGIL_TRAINING_N_ESTIMATORS": "40", "VIGIL_EQUIPMENT_HEALTH_PUBLISH_SECONDS": "0"}
    with running_platform(write_components(tmp / "components", "embedded"), tmp, env) as p:
        yield p


@pytest.fixture
def actor_env(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    """ActorProxy from the test talks to the equipment app's sidecar."""
    monkeypatch.setenv("DAPR_HTTP_PORT", str(platform.apps["equipment"].sidecar.http_port))


def send(platform: Platform, equipment_id: str, unit: int, cycles: range, first_seq: int) -> None:
    """FD001 training unit `unit`'s `cycles` as one machine's readings, seqs from `first_seq`."""
    rows = cmapss.load_train()[unit]
    batch = [
        {
            "equipment_id": equipment_id,
            "profile": "turbofan",
            "timestamp": datetime.now(UTC).isoformat(),
            "seq": first_seq + i,
            "values": cmapss.row_values(rows[c - 1]),
        }
        for i, c in enumerate(cycles)
    ]
    resp = httpx.post(f"{platform.url('ingestion')}/v1/readings", json=batch, timeout=60)
    assert resp.status_code == 200 and resp.json()["accepted"] == len(batch), resp.text


async def health(equipment_id: str) -> dict[str, Any]:
    proxy = ActorProxy.create(EQUIPMENT_ACTOR_TYPE, ActorId(equipment_id), EquipmentActorInterface)
    return json.loads(await proxy.GetHealth())


async def test_maintenance_resolves_the_alert_and_starts_a_new_life(
    platform: Platform, actor_env: None
) -> None:
    eid = f"lives-{datetime.now(UTC).strftime('%H%M%S%f')}"
    worn = len(cmapss.load_train()[3])  # unit 3 run to its end: a low predicted RUL, an alert
    send(platform, eid, 3, range(1, worn + 1), first_seq=1)
    (opened,) = wait_until(
        lambda: [a for a in alerts_of(platform, eid, "rul_low") if a["state"] == "open"],
        timeout=60,
        what="a rul_low alert for the worn machine",
    )
    before = await health(eid)
    assert (before["life"], before["life_readings"], before["status"]) == (0, worn, opened["severity"])

    events = f"{platform.url('ingestion')}/v1/equipment/{eid}/events"
    answer = httpx.post(events, json={"kind": "maintenance", "note": "e2e overhaul"}, timeout=30)
    assert answer.status_code == 201, answer.text
    assert answer.json()["seq"] == worn  # no seq given: after the last reading applied
    # Answered once the actor applied it: the new life is there already, nothing predicted in it yet.
    after = await health(eid)
    assert (after["life"], after["life_readings"], after["status"]) == (1, 0, "warming_up")
    assert after["open_alert_severity"] is None and after["predicted_rul"] is None
    again = httpx.post(events, json={"kind": "maintenance", "note": "e2e overhaul"}, timeout=30)
    assert again.status_code == 201 and (await health(eid))["life"] == 1  # the same event: no new life

    alerting = platform.url("alerting")
    resolved = wait_until(
        lambda: [a for a in alerts_of(platform, eid, "rul_low") if a["state"] == "resolved"],
        timeout=30,
        what="the old life's alert resolved",
    )
    assert [a["id"] for a in resolved] == [opened["id"]]
    record = httpx.get(f"{alerting}/v1/alerts/{opened['id']}", timeout=10).json()
    assert record["resolved_by"] == "equipment"
    last = record["history"][-1]
    assert last["action"] == "resolve" and f"maintenance after seq {worn}: e2e overhaul" in last["note"]

    # The new life: a fresh engine's first 30 cycles, seqs going on. Predicted again, ages from 1.
    send(platform, eid, 1, range(1, 31), first_seq=worn + 1)
    healthy = wait_until(
        lambda: [
            h
            for h in [_fleet_health(platform, eid)]
            if h["life"] == 1 and h["life_readings"] == 30 and h["predicted_rul"] is not None
        ],
        timeout=30,
        what="a prediction of the new life",
    )[0]
    assert (healthy["life"], healthy["life_readings"], healthy["last_seq"]) == (1, 30, worn + 30)
    assert healthy["status"] == "ok" and healthy["predictions_owed"] == 0
    assert healthy["predicted_rul"] > 50  # a new engine, far from the warning threshold
    assert [a["state"] for a in alerts_of(platform, eid, "rul_low")] == ["resolved"]


def _fleet_health(platform: Platform, equipment_id: str) -> dict[str, Any]:
    """The machine's health as alerting's fleet view has it (wait_until polls a plain function)."""
    fleet = httpx.get(f"{platform.url('alerting')}/v1/fleet", timeout=10).json()
    return next(m for m in fleet["machines"] if m["equipment_id"] == equipment_id)
