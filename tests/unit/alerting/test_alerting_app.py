"""The HTTP adapter over an in-memory service: status codes, 4xx naming the field, pub/sub answers."""

from __future__ import annotations

import json
from collections.abc import Iterator

import grpc
import pytest
from fastapi.testclient import TestClient

from apps.alerting.app import app, get_sender, get_service
from apps.alerting.sender import NotificationSender, SenderSettings
from apps.alerting.service import AlertingService
from apps.common.names import PUBSUB, TOPIC_ALERTS, TOPIC_EQUIPMENT_HEALTH, TOPIC_READINGS_DEAD_LETTER
from tests.unit.alerting.fakes import FakeMachines, FlakyChannel, InMemoryAlertingRepository
from tests.unit.alerting.helpers import alert, snapshot


class StoreDown(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "connection refused"


class BrokenRepository(InMemoryAlertingRepository):
    def _get(self, key, default=None):  # type: ignore[no-untyped-def]
        raise StoreDown()


@pytest.fixture
def client() -> Iterator[TestClient]:
    repo = InMemoryAlertingRepository()
    service = AlertingService(repo, FakeMachines())
    sender = NotificationSender(repo, FlakyChannel(failures=1), SenderSettings())
    app.dependency_overrides[get_service] = lambda: service
    app.dependency_overrides[get_sender] = lambda: sender
    # No `with`: the lifespan (which opens a real DaprClient) does not run.
    yield TestClient(app, raise_server_exceptions=False)
    app.dependency_overrides.clear()


def deliver(client: TestClient, topic: str, data: object, event_id: str = "e1") -> str:
    event = {"id": event_id, "source": "equipment", "topic": topic, "datacontenttype": "application/json"}
    resp = client.post(f"/events/{PUBSUB}/{topic}", json=event | {"data": data})
    assert resp.status_code == 200, resp.text
    return str(resp.json()["status"])


def test_subscriptions_are_declared(client: TestClient) -> None:
    subs = {s["topic"]: s for s in client.get("/dapr/subscribe").json()}
    assert set(subs) == {TOPIC_ALERTS, TOPIC_EQUIPMENT_HEALTH, TOPIC_READINGS_DEAD_LETTER}
    assert all(s["pubsubname"] == PUBSUB for s in subs.values())


def test_alert_flow_over_http(client: TestClient) -> None:
    assert deliver(client, TOPIC_ALERTS, alert("open").model_dump(mode="json")) == "SUCCESS"
    assert deliver(client, TOPIC_ALERTS, alert("open").model_dump(mode="json")) == "SUCCESS"  # redelivery
    alerts = client.get("/v1/alerts", params={"equipment_id": "engine-001", "state": "open"}).json()
    assert [a["id"] for a in alerts] == ["engine-001:rul_low:1"]
    assert client.get("/v1/alerts", params={"kind": "silent"}).json() == []
    one = client.get("/v1/alerts/engine-001:rul_low:1")
    assert one.status_code == 200 and one.json()["top_sensors"]
    ack = client.post("/v1/alerts/engine-001:rul_low:1/ack", json={"by": "ops"})
    assert ack.status_code == 200 and ack.json()["state"] == "acknowledged"
    assert client.post("/v1/alerts/engine-001:rul_low:1/ack").status_code == 200, "no body is fine"
    deliver(client, TOPIC_ALERTS, alert("clear", updated=5).model_dump(mode="json"), "e2")
    again = client.post("/v1/alerts/engine-001:rul_low:1/ack")
    assert again.status_code == 409
    assert "already cleared: the machine's condition ended at 2024-01-01" in again.json()["detail"]
    missing = client.post("/v1/alerts/engine-001:rul_low:7/ack")
    assert missing.status_code == 404 and "engine-001:rul_low:7" in missing.json()["detail"]
    assert client.get("/v1/alerts/nope-id").status_code == 404


@pytest.mark.parametrize(
    "alert_id", ["x", "ab", "a:b", "engine-001:rul_low:0", "e:what:1", "%7C%7C:rul_low:1", "e" * 400]
)
@pytest.mark.parametrize("action", ["ack", "resolve"])
def test_an_unknown_alert_is_404_whatever_its_shape(client: TestClient, alert_id: str, action: str) -> None:
    resp = client.post(f"/v1/alerts/{alert_id}/{action}", json={"by": "ana"})
    assert resp.status_code == 404 and "no alert" in resp.json()["detail"]
    assert client.get(f"/v1/alerts/{alert_id}").status_code == 404


def test_ack_with_a_note_resolve_and_the_history(client: TestClient) -> None:
    deliver(client, TOPIC_ALERTS, alert("open", revision=1).model_dump(mode="json"))
    ack = client.post("/v1/alerts/engine-001:rul_low:1/ack", json={"by": "ana", "note": "checking"})
    assert ack.status_code == 200 and ack.json()["acknowledged_by"] == "ana"
    resolved = client.post("/v1/alerts/engine-001:rul_low:1/resolve", json={"by": "bo", "note": "replaced"})
    assert resolved.status_code == 200 and resolved.json()["state"] == "resolved"
    history = client.get("/v1/alerts/engine-001:rul_low:1").json()["history"]
    assert [(c["action"], c["by"], c["note"]) for c in history] == [
        ("open", "equipment", ""),
        ("acknowledge", "ana", "checking"),
        ("resolve", "bo", "replaced"),
    ]
    for action in ("ack", "resolve"):
        refused = client.post(f"/v1/alerts/engine-001:rul_low:1/{action}", json={"by": "cy"})
        assert refused.status_code == 409 and "resolved by bo" in refused.json()["detail"]
    assert [a["id"] for a in client.get("/v1/alerts", params={"state": "resolved"}).json()] == [
        "engine-001:rul_low:1"
    ]
    long_note = client.post("/v1/alerts/engine-001:rul_low:1/ack", json={"note": "x" * 2001})
    assert long_note.status_code == 422 and "note" in long_note.text


def test_retire_a_machine(client: TestClient) -> None:
    deliver(client, TOPIC_EQUIPMENT_HEALTH, snapshot("m1", status="silent").model_dump(mode="json"))
    deliver(
        client, TOPIC_ALERTS, alert("open", equipment_id="m1", kind="silent").model_dump(mode="json"), "e2"
    )
    resp = client.request("DELETE", "/v1/fleet/m1", json={"by": "ana", "note": "scrapped"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["resolved_alerts"] == ["m1:silent:1"] and resp.json()["by"] == "ana"
    assert client.get("/v1/fleet").json()["total"] == 0
    again = client.delete("/v1/fleet/m1")
    assert again.status_code == 200 and again.json() == resp.json(), "a retry answers the same retirement"
    assert client.delete("/v1/fleet/nobody").status_code == 404


def test_notification_status(client: TestClient) -> None:
    empty = client.get("/v1/notifications").json()
    assert (empty["binding"], empty["pending"], empty["failing"]) == ("notifications", 0, False)
    deliver(client, TOPIC_ALERTS, alert("open").model_dump(mode="json"))
    status = client.get("/v1/notifications").json()
    assert status["pending"] == 1 and status["pending_notifications"][0]["action"] == "open"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"state": "closed"}, "state"),
        ({"severity": "info"}, "severity"),
        ({"kind": "x"}, "kind"),
        ({"equipment_id": "has space"}, "equipment_id"),
        ({"limit": 0}, "limit"),
    ],
)
def test_bad_query_is_422_naming_the_field(client: TestClient, params: dict, field: str) -> None:  # type: ignore[type-arg]
    resp = client.get("/v1/alerts", params=params)
    assert resp.status_code == 422 and field in json.dumps(resp.json())


def test_bad_ack_body_is_422_naming_the_field(client: TestClient) -> None:
    deliver(client, TOPIC_ALERTS, alert("open").model_dump(mode="json"))
    resp = client.post("/v1/alerts/engine-001:rul_low:1/ack", json={"by": 5})
    assert resp.status_code == 422 and "by" in json.dumps(resp.json())
    resp = client.post("/v1/alerts/engine-001:rul_low:1/ack", json={"who": "x"})
    assert resp.status_code == 422 and "who" in json.dumps(resp.json())
    assert client.get("/v1/fleet", params={"status": "broken"}).status_code == 422
    assert client.get("/v1/dead-letters", params={"limit": -1}).status_code == 422


def test_malformed_pubsub_messages_are_dropped_not_crashed(client: TestClient) -> None:
    assert deliver(client, TOPIC_ALERTS, {"id": "engine-001:rul_low:1"}) == "DROP"
    assert deliver(client, TOPIC_EQUIPMENT_HEALTH, "garbage") == "DROP"
    resp = client.post(f"/events/{PUBSUB}/{TOPIC_ALERTS}", content=b"{not json")
    assert resp.status_code == 200 and resp.json() == {"status": "DROP"}
    letters = client.get("/v1/dead-letters").json()
    assert [d["topic"] for d in letters] == [TOPIC_ALERTS, TOPIC_EQUIPMENT_HEALTH, TOPIC_ALERTS]


def test_fleet_and_dead_letters(client: TestClient) -> None:
    deliver(client, TOPIC_EQUIPMENT_HEALTH, snapshot("m1", status="critical").model_dump(mode="json"))
    fleet = client.get("/v1/fleet").json()
    assert fleet["total"] == 1 and fleet["counts"]["critical"] == 1
    assert fleet["machines"][0]["equipment_id"] == "m1"
    payload = {"reason": "bad", "index": 4, "source": "http", "reading": {"equipment_id": "m1", "seq": 1}}
    deliver(client, TOPIC_READINGS_DEAD_LETTER, payload)
    (letter,) = client.get("/v1/dead-letters").json()
    assert letter["index"] == 4 and letter["reading"]["seq"] == 1


def test_store_failure_asks_dapr_to_retry() -> None:
    service = AlertingService(BrokenRepository(), FakeMachines())
    app.dependency_overrides[get_service] = lambda: service
    try:
        client = TestClient(app, raise_server_exceptions=False)
        assert deliver(client, TOPIC_ALERTS, alert("open").model_dump(mode="json")) == "RETRY"
        resp = client.get("/v1/alerts")
        assert resp.status_code == 503 and resp.json() == {"detail": "state store unavailable, try again"}
    finally:
        app.dependency_overrides.clear()


def test_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
