"""The archive hand-off shared by requests: one message for readings handed off together, each request
released only once its message was published, and every one of them told when the publish failed."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from apps.ingestion.handoff import GroupedHandOff


class GatedPublisher:
    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.failing = False

    async def publish(self, topic: str, event: Any) -> None:
        await self.gate.wait()
        if self.failing:
            raise RuntimeError("pubsub down")
        self.messages.append((topic, event))


async def test_requests_handing_off_together_share_one_message_and_wait_for_it() -> None:
    publisher = GatedPublisher()
    handoff = GroupedHandOff(publisher, "readings-accepted", linger_seconds=0.05, max_readings=10)
    sends = [asyncio.create_task(handoff.send([{"seq": i}])) for i in range(3)]
    await asyncio.sleep(0.1)
    assert not any(s.done() for s in sends)  # not published yet: nobody goes on
    publisher.gate.set()
    await asyncio.gather(*sends)
    assert publisher.messages == [("readings-accepted", {"readings": [{"seq": 0}, {"seq": 1}, {"seq": 2}]})]


async def test_a_message_never_exceeds_the_limit() -> None:
    publisher = GatedPublisher()
    publisher.gate.set()
    handoff = GroupedHandOff(publisher, "t", linger_seconds=0.05, max_readings=3)
    await asyncio.gather(*(handoff.send([{"seq": 2 * i}, {"seq": 2 * i + 1}]) for i in range(3)))
    assert [len(e["readings"]) for _, e in publisher.messages] == [2, 2, 2]


async def test_a_failed_publish_is_told_to_every_request_in_it() -> None:
    publisher = GatedPublisher()
    publisher.failing = True
    publisher.gate.set()
    handoff = GroupedHandOff(publisher, "t", linger_seconds=0.02, max_readings=10)
    outcomes = await asyncio.gather(
        handoff.send([{"seq": 1}]), handoff.send([{"seq": 2}]), return_exceptions=True
    )
    assert all(isinstance(o, RuntimeError) for o in outcomes) and publisher.messages == []
    publisher.failing = False
    await handoff.send([{"seq": 1}])  # the resend goes through
    assert publisher.messages == [("t", {"readings": [{"seq": 1}]})]


async def test_closing_mid_publish_releases_nobody_as_published() -> None:
    publisher = GatedPublisher()
    handoff = GroupedHandOff(publisher, "t", linger_seconds=0.0, max_readings=10)
    send = asyncio.create_task(handoff.send([{"seq": 1}]))
    await asyncio.sleep(0.02)
    await handoff.close()
    with pytest.raises((ConnectionAbortedError, asyncio.CancelledError)):
        await send
    assert publisher.messages == []
