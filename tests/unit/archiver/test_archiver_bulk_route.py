"""readings-accepted in bulk: the subscription declares bulkSubscribe, each entry of a bulk delivery
is staged and answered on its own, and a single CloudEvent still works."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from apps.archiver.app import app
from apps.common.bulksub import BULK_EVENT_TYPE
from apps.common.names import PUBSUB, TOPIC_READINGS_ACCEPTED
from tests.unit.common.test_archive import reading

ROUTE = f"/events/{PUBSUB}/{TOPIC_READINGS_ACCEPTED}"


class FakeService:
    def __init__(self, failing: set[str] | None = None) -> None:
        self.staged: dict[str, int] = {}
        self.failing = failing or set()

    async def stage(self, message_id: str, readings: list[Any]) -> None:
        if message_id in self.failing:
            raise RuntimeError("store down")
        self.staged[message_id] = len(readings)


@pytest.fixture
def service() -> FakeService:
    return FakeService(failing={"bad-store"})


@pytest.fixture
def client(service: FakeService) -> Iterator[TestClient]:
    app.state.service = service  # no lifespan: no sidecar
    yield TestClient(app, raise_server_exceptions=False)
    del app.state.service


def event(event_id: str, data: Any) -> dict[str, Any]:
    return {"id": event_id, "specversion": "1.0", "datacontenttype": "application/json", "data": data}


def batch(n: int) -> dict[str, Any]:
    return {"readings": [reading(seq=i).model_dump(mode="json") for i in range(n)]}


def test_subscription_declares_bulk_subscribe(client: TestClient) -> None:
    (sub,) = client.get("/dapr/subscribe").json()
    assert sub["topic"] == TOPIC_READINGS_ACCEPTED and sub["route"] == ROUTE
    assert sub["bulkSubscribe"] == {"enabled": True, "maxMessagesCount": 100, "maxAwaitDurationMs": 50}


def test_each_entry_is_staged_and_answered(client: TestClient, service: FakeService) -> None:
    events = [
        event("m1", batch(2)),
        event("m2", {"readings": "nope"}),
        event("bad-store", batch(1)),
        event("m3", batch(3)),
    ]
    envelope = {
        "id": "b",
        "type": BULK_EVENT_TYPE,
        "topic": TOPIC_READINGS_ACCEPTED,
        "pubsubname": PUBSUB,
        "entries": [{"entryId": f"e{i}", "event": e} for i, e in enumerate(events)],
    }
    resp = client.post(ROUTE, json=envelope)
    assert resp.status_code == 200
    statuses = {s["entryId"]: s["status"] for s in resp.json()["statuses"]}
    assert statuses == {"e0": "SUCCESS", "e1": "DROP", "e2": "RETRY", "e3": "SUCCESS"}
    assert service.staged == {"m1": 2, "m3": 3}


def test_a_single_cloudevent_is_answered_as_one(client: TestClient, service: FakeService) -> None:
    headers = {"content-type": "application/cloudevents+json"}
    assert client.post(ROUTE, json=event("m9", batch(1)), headers=headers).json() == {"status": "SUCCESS"}
    assert client.post(ROUTE, content=b"{not json", headers=headers).json() == {"status": "DROP"}
    assert service.staged == {"m9": 1}
