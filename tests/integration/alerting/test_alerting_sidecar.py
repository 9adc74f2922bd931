"""The alerting app as a real process behind a real localdapr sidecar (in-memory pub/sub, SQLite state).

Events are published with the official SDK DaprClient through another app's sidecar, as the
EquipmentActor and ingestion do; results are read over alerting's HTTP API. Every wait is on a
condition. Ordering assertions rely on pubsub.in-memory's default of one message in flight per
subscriber, so a marker published after an event is processed after it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from dapr.aio.clients import DaprClient as AsyncDaprClient
from dapr.clients import DaprClient
from pydantic import BaseModel

from apps.alerting.domain import Envelope
from apps.alerting.lifecycle import AlertFilter
from apps.alerting.service import AlertingService
from apps.alerting.store import DaprAlertingRepository
from apps.common.names import (
    ALERTING_APP_ID,
    EQUIPMENT_APP_ID,
    PUBSUB,
    STATE_STORE,
    TOPIC_ALERTS,
    TOPIC_EQUIPMENT_HEALTH,
    TOPIC_READINGS_DEAD_LETTER,
)
from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port, wait_until
from tests.integration.localdapr.components import component, write
from tests.unit.alerting.fakes import FakeMachines
from tests.unit.alerting.helpers import alert, snapshot

pytestmark = pytest.mark.sidecar

REPO = Path(__file__).resolve().parents[3]
APP = "apps.alerting.app:app"


def write_resources(folder: Path) -> Path:
    write(folder, "pubsub.yaml", component(PUBSUB, "pubsub.in-memory", {}))
    write(
        folder,
        "statestore.yaml",
        component(STATE_STORE, "state.sqlite", {"connectionString": str(folder / "state.db")}),
    )
    return folder


@dataclass
class Alerting:
    """alerting (app process + sidecar) and a publisher sidecar standing in for equipment/ingestion."""

    resources: Path
    registry: Path
    sidecar: SidecarThread
    app: AppProcess
    publisher: SidecarThread
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.app.port}"

    def get(self, path: str, **params: Any) -> Any:
        resp = httpx.get(f"{self.url}{path}", params=params, timeout=10)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def publish(
        self,
        topic: str,
        event: BaseModel | dict[str, Any] | str,
        content_type: str = "application/json",
        event_id: str | None = None,
    ) -> None:
        """Publish `event`; `event_id` sets the CloudEvent id (else the sidecar makes one)."""
        data = event.model_dump_json() if isinstance(event, BaseModel) else event
        data = data if isinstance(data, str) else json.dumps(data)
        metadata = {} if event_id is None else {"cloudevent.id": event_id}
        with DaprClient(address=self.publisher.grpc_address) as client:
            client.publish_event(
                PUBSUB, topic, data, data_content_type=content_type, publish_metadata=metadata
            )

    def start_app(self) -> None:
        self.app = AppProcess(
            APP, self.app.port, self.sidecar.options.app_env(), self.env, cwd=REPO, name=ALERTING_APP_ID
        ).start()

    def stop(self) -> None:
        self.app.stop()
        self.sidecar.stop()
        self.publisher.stop()


def start_alerting(resources: Path, registry: Path, env: dict[str, str] | None = None) -> Alerting:
    """alerting as a process (with `env` added to its environment) behind its sidecar, and a publisher."""
    env = env or {}
    port = free_port()
    sidecar = SidecarThread(
        SidecarOptions(
            app_id=ALERTING_APP_ID, resources_paths=[resources], app_port=port, registry_dir=registry
        )
    ).start()
    try:
        app = AppProcess(APP, port, sidecar.options.app_env(), env, cwd=REPO, name=ALERTING_APP_ID).start()
        sidecar.wait_app_ready()
        publisher = SidecarThread(
            SidecarOptions(app_id=EQUIPMENT_APP_ID, resources_paths=[resources], registry_dir=registry)
        ).start()
    except BaseException:
        sidecar.stop()
        raise
    return Alerting(resources, registry, sidecar, app, publisher, env)


@pytest.fixture(scope="module")
def alerting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Alerting]:
    tmp = tmp_path_factory.mktemp("alerting")
    running = start_alerting(write_resources(tmp / "res"), tmp / "reg")
    with pytest.MonkeyPatch.context() as mp:
        # The SDK's health check reads DAPR_HTTP_PORT from the environment.
        mp.setenv("DAPR_HTTP_PORT", str(running.publisher.http_port))
        yield running
    running.stop()


def machine() -> str:
    return f"it-{uuid.uuid4().hex[:8]}"


def alerts_of(a: Alerting, eid: str, **params: Any) -> list[dict[str, Any]]:
    return a.get("/v1/alerts", equipment_id=eid, **params)  # type: ignore[no-any-return]


def processed_marker(a: Alerting, topic: str = TOPIC_ALERTS) -> None:
    """Publish a marker on `topic` and wait until alerting shows it: everything before it is processed."""
    eid = machine()
    if topic == TOPIC_ALERTS:
        a.publish(topic, alert("open", equipment_id=eid))
        wait_until(lambda: alerts_of(a, eid), timeout=15, what="marker alert")
    else:
        a.publish(topic, snapshot(eid))
        wait_until(
            lambda: any(m["equipment_id"] == eid for m in a.get("/v1/fleet")["machines"]),
            timeout=15,
            what="marker snapshot",
        )


def test_alert_lifecycle_dedupe_and_order(alerting: Alerting) -> None:
    eid = machine()
    alert_id = f"{eid}:rul_low:1"
    alerting.publish(TOPIC_ALERTS, alert("open", equipment_id=eid, updated=0, rul=45))
    for _ in range(3):  # redelivered / re-published escalation
        alerting.publish(
            TOPIC_ALERTS, alert("escalate", equipment_id=eid, severity="critical", updated=10, rul=18)
        )
    found = wait_until(
        lambda: [a for a in alerts_of(alerting, eid) if a["severity"] == "critical"],
        timeout=15,
        what="critical",
    )
    assert len(alerts_of(alerting, eid)) == 1, "one alert per episode, whatever the number of events"
    assert found[0]["id"] == alert_id and found[0]["state"] == "open" and found[0]["top_sensors"]

    ack = httpx.post(f"{alerting.url}/v1/alerts/{alert_id}/ack", json={"by": "ops"}, timeout=10)
    assert ack.status_code == 200 and ack.json()["state"] == "acknowledged"

    alerting.publish(TOPIC_ALERTS, alert("clear", equipment_id=eid, severity="critical", updated=20, rul=80))
    wait_until(lambda: alerts_of(alerting, eid, state="cleared"), timeout=15, what="cleared")
    # Late deliveries of older events must not reopen it.
    alerting.publish(TOPIC_ALERTS, alert("open", equipment_id=eid, updated=0))
    alerting.publish(TOPIC_ALERTS, alert("escalate", equipment_id=eid, severity="critical", updated=10))
    processed_marker(alerting)
    record = alerting.get(f"/v1/alerts/{alert_id}")
    assert (
        record["state"] == "cleared" and record["acknowledged_by"] == "ops" and record["predicted_rul"] == 80
    )

    again = httpx.post(f"{alerting.url}/v1/alerts/{alert_id}/ack", timeout=10)
    assert again.status_code == 409
    assert httpx.post(f"{alerting.url}/v1/alerts/{eid}:rul_low:9/ack", timeout=10).status_code == 404


def test_filters_and_newest_first(alerting: Alerting) -> None:
    eid = machine()
    for episode in (1, 2, 3):
        t = 100.0 * episode
        alerting.publish(TOPIC_ALERTS, alert("open", equipment_id=eid, episode=episode, raised=t, updated=t))
    alerting.publish(TOPIC_ALERTS, alert("open", equipment_id=eid, kind="silent", raised=350, updated=350))
    wait_until(lambda: len(alerts_of(alerting, eid)) == 4, timeout=15, what="four alerts")
    ids = [a["id"] for a in alerts_of(alerting, eid)]
    assert ids == [f"{eid}:silent:1", f"{eid}:rul_low:3", f"{eid}:rul_low:2", f"{eid}:rul_low:1"]
    # Each new episode closes the previous one of the same kind (its clear was never published).
    assert [a["episode"] for a in alerts_of(alerting, eid, kind="rul_low", state="open")] == [3]
    assert len(alerts_of(alerting, eid, state="cleared")) == 2
    assert [a["kind"] for a in alerts_of(alerting, eid, kind="silent")] == ["silent"]
    bad = httpx.get(f"{alerting.url}/v1/alerts", params={"severity": "loud"}, timeout=10)
    assert bad.status_code == 422 and "severity" in bad.text


def test_fleet_keeps_the_latest_snapshot(alerting: Alerting) -> None:
    eid = machine()
    alerting.publish(TOPIC_EQUIPMENT_HEALTH, snapshot(eid, updated=50, status="critical"))
    alerting.publish(TOPIC_EQUIPMENT_HEALTH, snapshot(eid, updated=10, status="ok"))  # older, arrives late

    def mine() -> list[dict[str, Any]]:
        return [m for m in alerting.get("/v1/fleet")["machines"] if m["equipment_id"] == eid]

    wait_until(mine, timeout=15, what="snapshot in fleet")
    processed_marker(alerting, TOPIC_EQUIPMENT_HEALTH)
    assert [m["status"] for m in mine()] == ["critical"]
    fleet = alerting.get("/v1/fleet")
    assert fleet["counts"]["critical"] >= 1 and fleet["total"] == sum(fleet["counts"].values())
    assert [m["equipment_id"] for m in alerting.get("/v1/fleet", status="critical")["machines"]].count(
        eid
    ) == 1


def test_dead_letters_and_malformed_messages(alerting: Alerting) -> None:
    eid = machine()
    reading = {
        "equipment_id": eid,
        "seq": 3,
        "timestamp": "2024-01-01T00:00:00Z",
        "values": {"sensor_99": 1.0},
    }
    letter = {"reason": "unknown sensor 'sensor_99'", "index": 1, "source": "http", "reading": reading}
    alerting.publish(TOPIC_READINGS_DEAD_LETTER, letter)
    # Malformed: not an Alert, and a plain-text body: dropped (not retried forever) and kept as letters.
    alerting.publish(TOPIC_ALERTS, {"equipment_id": eid, "kind": "rul_low"})
    alerting.publish(TOPIC_EQUIPMENT_HEALTH, f"{eid} is fine", content_type="text/plain")

    def mine() -> list[dict[str, Any]]:
        return [d for d in alerting.get("/v1/dead-letters") if eid in json.dumps(d)]

    letters = wait_until(lambda: len(mine()) == 3 and mine(), timeout=15, what="three dead letters")
    by_topic = {d["topic"]: d for d in letters}
    assert by_topic[TOPIC_READINGS_DEAD_LETTER]["index"] == 1
    assert by_topic[TOPIC_READINGS_DEAD_LETTER]["reading"] == reading
    assert "malformed alerts message" in by_topic[TOPIC_ALERTS]["reason"]
    assert "episode" in by_topic[TOPIC_ALERTS]["reason"], "the reason names a missing field"
    assert by_topic[TOPIC_EQUIPMENT_HEALTH]["reading"] == f"{eid} is fine"
    received = [datetime.fromisoformat(d["received_at"]) for d in alerting.get("/v1/dead-letters")]
    assert received == sorted(received, reverse=True), "newest first"
    # The app is still serving, and later good messages still flow.
    processed_marker(alerting)
    assert httpx.get(f"{alerting.url}/healthz", timeout=5).json() == {"status": "ok"}


async def test_two_replicas_writing_concurrently_converge(
    alerting: Alerting, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two service instances (like two alerting replicas) race on the real store: etags keep it whole."""
    monkeypatch.setenv("DAPR_HTTP_PORT", str(alerting.sidecar.http_port))
    eids = [machine() for _ in range(6)]
    async with AsyncDaprClient(address=alerting.sidecar.grpc_address) as client:
        replicas = [AlertingService(DaprAlertingRepository(client), FakeMachines()) for _ in range(2)]
        events = [alert("open", equipment_id=e) for e in eids] + [
            alert("escalate", equipment_id=e, severity="critical", updated=5) for e in eids
        ]
        await asyncio.gather(*(replicas[i % 2].apply_alert(e) for i, e in enumerate(events * 2)))
        await asyncio.gather(*(replicas[i % 2].fleet.record(snapshot(e)) for i, e in enumerate(eids * 2)))
        for e in eids:
            (record,) = await replicas[0].list_alerts(AlertFilter(equipment_id=e))
            assert record.severity == "critical" and record.state == "open"
    fleet_ids = {m["equipment_id"] for m in alerting.get("/v1/fleet")["machines"]}
    assert set(eids) <= fleet_ids, "no machine lost to a racing fleet-index write"


async def test_a_fleet_appearing_at_once_is_recorded_without_exhausting_retries(
    alerting: Alerting, monkeypatch: pytest.MonkeyPatch
) -> None:
    """200 new machines' first snapshot, alert and dead letter, all in flight at once through two
    replicas, with the default conflict budget: each shard is contended only by what hashes to it."""
    monkeypatch.setenv("DAPR_HTTP_PORT", str(alerting.sidecar.http_port))
    eids = [machine() for _ in range(200)]
    letters = [
        Envelope({"reason": "bad", "reading": {"equipment_id": e}}, f"ev-{e}", EQUIPMENT_APP_ID, None)
        for e in eids
    ]
    async with AsyncDaprClient(address=alerting.sidecar.grpc_address) as client:
        replicas = [AlertingService(DaprAlertingRepository(client), FakeMachines()) for _ in range(2)]
        # Not return_exceptions: one writer giving up after its etag conflicts fails the test.
        await asyncio.gather(
            *(replicas[i % 2].fleet.record(snapshot(e)) for i, e in enumerate(eids)),
            *(replicas[i % 2].apply_alert(alert("open", equipment_id=e)) for i, e in enumerate(eids)),
            *(replicas[i % 2].on_dead_letter(d, TOPIC_READINGS_DEAD_LETTER) for i, d in enumerate(letters)),
        )
        listed = {a.equipment_id for a in await replicas[0].list_alerts(AlertFilter(), limit=100_000)}
        assert set(eids) <= listed
        dead = {d.equipment_id for d in await replicas[1].letters.newest(10_000)}
        assert set(eids) <= dead
    fleet_ids = {m["equipment_id"] for m in alerting.get("/v1/fleet")["machines"]}
    assert set(eids) <= fleet_ids
