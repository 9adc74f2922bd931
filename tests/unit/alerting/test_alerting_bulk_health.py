"""equipment-health in bulk: the subscription declares bulkSubscribe, a bulk envelope is answered per
entry, and a batch of snapshots is recorded with one bulk read and one transaction."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from apps.alerting.app import app, get_service
from apps.alerting.fleet import FleetBook
from apps.alerting.service import AlertingService
from apps.common.bulksub import BULK_EVENT_TYPE
from apps.common.names import PUBSUB, TOPIC_EQUIPMENT_HEALTH
from tests.unit.alerting.fakes import FakeMachines, InMemoryAlertingRepository
from tests.unit.alerting.helpers import snapshot
from tests.unit.alerting.test_alerting_app import BrokenRepository

ROUTE = f"/events/{PUBSUB}/{TOPIC_EQUIPMENT_HEALTH}"


class CountingRepository(InMemoryAlertingRepository):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def get_snapshot(self, equipment_id: str) -> Any:
        self.calls.append("get_snapshot")
        return await super().get_snapshot(equipment_id)

    async def get_snapshots(self, equipment_ids: Any) -> Any:
        self.calls.append("get_snapshots")
        return await super().get_snapshots(equipment_ids)

    async def save_snapshots(self, writes: Any) -> None:
        self.calls.append("save_snapshots")
        await super().save_snapshots(writes)


@pytest.fixture
def repo() -> CountingRepository:
    return CountingRepository()


@pytest.fixture
def client(repo: CountingRepository) -> Iterator[TestClient]:
    service = AlertingService(repo, FakeMachines())
    app.dependency_overrides[get_service] = lambda: service
    yield TestClient(app, raise_server_exceptions=False)
    app.dependency_overrides.clear()


def cloudevent(data: Any, event_id: str) -> dict[str, Any]:
    return {
        "id": event_id,
        "source": "equipment",
        "specversion": "1.0",
        "datacontenttype": "application/json",
        "data": data,
    }


def post_bulk(client: TestClient, events: list[Any]) -> dict[str, str]:
    envelope = {
        "id": "b1",
        "type": BULK_EVENT_TYPE,
        "topic": TOPIC_EQUIPMENT_HEALTH,
        "pubsubname": PUBSUB,
        "metadata": {},
        "entries": [
            {
                "entryId": f"e{i}",
                "event": event,
                "contentType": "application/cloudevents+json",
                "metadata": {},
            }
            for i, event in enumerate(events)
        ],
    }
    resp = client.post(ROUTE, json=envelope)
    assert resp.status_code == 200, resp.text
    statuses = resp.json()["statuses"]
    return {s["entryId"]: s["status"] for s in statuses}


def test_subscription_declares_bulk_subscribe(client: TestClient) -> None:
    subs = {s["topic"]: s for s in client.get("/dapr/subscribe").json()}
    health = subs[TOPIC_EQUIPMENT_HEALTH]
    assert health["route"] == ROUTE and health["pubsubname"] == PUBSUB
    assert health["bulkSubscribe"] == {"enabled": True, "maxMessagesCount": 100, "maxAwaitDurationMs": 50}
    assert "bulkSubscribe" not in subs["alerts"]


def test_bulk_delivery_is_answered_per_entry_and_recorded(client: TestClient) -> None:
    statuses = post_bulk(
        client,
        [
            cloudevent(snapshot("m1", status="critical").model_dump(mode="json"), "a"),
            cloudevent("garbage", "b"),  # not a snapshot: dropped, kept as a dead letter
            cloudevent(snapshot("m2").model_dump(mode="json"), "c"),
            "not a cloudevent",  # not even an object: dropped too
        ],
    )
    assert statuses == {"e0": "SUCCESS", "e1": "DROP", "e2": "SUCCESS", "e3": "DROP"}
    fleet = client.get("/v1/fleet").json()
    assert sorted(m["equipment_id"] for m in fleet["machines"]) == ["m1", "m2"]
    assert len(client.get("/v1/dead-letters").json()) == 2


def test_known_machines_of_a_batch_take_one_read_and_one_write(
    client: TestClient, repo: CountingRepository
) -> None:
    post_bulk(client, [cloudevent(snapshot(m).model_dump(mode="json"), m) for m in ("m1", "m2", "m3")])
    repo.calls.clear()
    later = [
        cloudevent(snapshot(m, updated=5, status="warning").model_dump(mode="json"), m + "'")
        for m in ("m1", "m2", "m3")
    ]
    older = cloudevent(snapshot("m2", updated=1, status="critical").model_dump(mode="json"), "old")
    assert set(post_bulk(client, [*later, older]).values()) == {"SUCCESS"}
    assert repo.calls == ["get_snapshots", "save_snapshots"]
    fleet = client.get("/v1/fleet").json()
    assert {m["status"] for m in fleet["machines"]} == {"warning"}  # the older m2 in the batch lost


def test_single_cloudevents_still_work_on_the_bulk_route(client: TestClient) -> None:
    event = cloudevent(snapshot("m9").model_dump(mode="json"), "x")
    resp = client.post(ROUTE, json=event)
    assert resp.json() == {"status": "SUCCESS"}
    resp = client.post(ROUTE, content=b"{not json", headers={"content-type": "application/cloudevents+json"})
    assert resp.json() == {"status": "DROP"}
    assert [m["equipment_id"] for m in client.get("/v1/fleet").json()["machines"]] == ["m9"]


def test_store_failure_retries_every_entry_of_the_batch() -> None:
    service = AlertingService(BrokenRepository(), FakeMachines())
    app.dependency_overrides[get_service] = lambda: service
    try:
        client = TestClient(app, raise_server_exceptions=False)
        statuses = post_bulk(
            client, [cloudevent(snapshot(m).model_dump(mode="json"), m) for m in ("m1", "m2")]
        )
        assert statuses == {"e0": "RETRY", "e1": "RETRY"}
    finally:
        app.dependency_overrides.clear()


async def test_record_many_retries_a_conflicting_transaction() -> None:
    repo = InMemoryAlertingRepository()
    fleet = FleetBook(repo, max_conflict_retries=5)
    await fleet.record_many([snapshot("m1"), snapshot("m2")])  # new machines: created one by one
    repo.conflicts_to_inject = 1  # another replica wrote in between our read and our transaction
    await fleet.record_many([snapshot("m1", updated=3), snapshot("m2", updated=3)])
    stored = await repo.get_snapshots(["m1", "m2"])
    assert {v.value.updated_at for v in stored.values()} == {snapshot(updated=3).updated_at}


async def test_concurrent_batches_keep_each_machines_newest() -> None:
    repo = InMemoryAlertingRepository()
    fleet = FleetBook(repo, max_conflict_retries=50)
    await fleet.record_many([snapshot("m1"), snapshot("m2")])
    batches = [[snapshot("m1", updated=t), snapshot("m2", updated=10 - t)] for t in range(1, 10)]
    await asyncio.gather(*(fleet.record_many(b) for b in batches))
    stored = await repo.get_snapshots(["m1", "m2"])
    assert stored["m1"].value.updated_at == snapshot(updated=9).updated_at
    assert stored["m2"].value.updated_at == snapshot(updated=9).updated_at
