"""CoalescingPublisher: concurrent health snapshots share one bulk publish; each caller gets its own
entry's outcome; other topics are published one by one."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from apps.common.names import TOPIC_ALERTS, TOPIC_EQUIPMENT_HEALTH
from apps.equipment.healthpub import CoalescingPublisher, PublishFailed
from apps.equipment.settings import EquipmentSettings


class FakeClient:
    def __init__(self, fail_ids: tuple[str, ...] = (), down: bool = False) -> None:
        self.calls: list[tuple[str, list[dict[str, Any]], str | None]] = []
        self.fail_ids = fail_ids
        self.down = down

    async def publish_events(
        self, pubsub: str, topic: str, entries: list[Any], data_content_type: str | None = None
    ) -> Any:
        await asyncio.sleep(0)
        if self.down:
            raise RuntimeError("sidecar unreachable")
        self.calls.append((topic, [json.loads(e.event) for e in entries], data_content_type))
        failed = [
            SimpleNamespace(entry_id=e.entry_id, error="broker said no")
            for e in entries
            if json.loads(e.event)["id"] in self.fail_ids
        ]
        return SimpleNamespace(failed_entries=failed)


class FakeSingle:
    def __init__(self) -> None:
        self.published: list[tuple[str, Any]] = []

    async def publish(self, topic: str, event: Any) -> None:
        self.published.append((topic, event))


def publisher(
    client: FakeClient, single: FakeSingle, max_entries: int = 10, linger: float = 0.02
) -> CoalescingPublisher:
    return CoalescingPublisher(client, single, [TOPIC_EQUIPMENT_HEALTH], linger, max_entries)  # type: ignore[arg-type]


async def test_concurrent_snapshots_share_one_bulk_publish() -> None:
    client, single = FakeClient(), FakeSingle()
    pub = publisher(client, single)
    async with asyncio.timeout(5):
        await asyncio.gather(*(pub.publish(TOPIC_EQUIPMENT_HEALTH, {"id": f"m{i}"}) for i in range(5)))
    assert len(client.calls) == 1
    topic, events, content_type = client.calls[0]
    assert topic == TOPIC_EQUIPMENT_HEALTH and content_type == "application/json"
    assert [e["id"] for e in events] == [f"m{i}" for i in range(5)]
    await pub.close()


async def test_a_full_batch_goes_at_once_and_the_rest_after_the_linger() -> None:
    client, single = FakeClient(), FakeSingle()
    pub = publisher(client, single, max_entries=3, linger=0.05)
    async with asyncio.timeout(5):
        await asyncio.gather(*(pub.publish(TOPIC_EQUIPMENT_HEALTH, {"id": f"m{i}"}) for i in range(4)))
    assert [len(events) for _, events, _ in client.calls] == [3, 1]
    await pub.close()


async def test_each_caller_sees_its_own_entry_fail() -> None:
    client, single = FakeClient(fail_ids=("m1",)), FakeSingle()
    pub = publisher(client, single)
    async with asyncio.timeout(5):
        results = await asyncio.gather(
            *(pub.publish(TOPIC_EQUIPMENT_HEALTH, {"id": f"m{i}"}) for i in range(3)), return_exceptions=True
        )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], PublishFailed) and "broker said no" in str(results[1])
    await pub.close()


async def test_a_failed_call_fails_every_caller() -> None:
    pub = publisher(FakeClient(down=True), FakeSingle())
    async with asyncio.timeout(5):
        results = await asyncio.gather(
            *(pub.publish(TOPIC_EQUIPMENT_HEALTH, {"id": f"m{i}"}) for i in range(2)), return_exceptions=True
        )
    assert all(isinstance(r, PublishFailed) for r in results)
    await pub.close()


async def test_other_topics_are_published_one_by_one() -> None:
    client, single = FakeClient(), FakeSingle()
    pub = publisher(client, single)
    await pub.publish(TOPIC_ALERTS, {"id": "a1"})
    assert single.published == [(TOPIC_ALERTS, {"id": "a1"})] and client.calls == []


async def test_close_sends_what_is_waiting() -> None:
    client, single = FakeClient(), FakeSingle()
    pub = publisher(client, single, linger=60)
    waiting = asyncio.create_task(pub.publish(TOPIC_EQUIPMENT_HEALTH, {"id": "m0"}))
    await asyncio.sleep(0)
    await pub.close()
    async with asyncio.timeout(5):
        await waiting
    assert len(client.calls) == 1


def test_coalescing_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_EQUIPMENT_HEALTH_PUBLISH_LINGER_MS", "0")
    assert EquipmentSettings().health_publish_linger_ms == 0
    monkeypatch.setenv("VIGIL_EQUIPMENT_HEALTH_PUBLISH_MAX_BATCH", "0")
    with pytest.raises(ValidationError):
        EquipmentSettings()
