"""Health snapshots of concurrent actors, published together (Dapr bulk publish).

Every actor publishes its HealthSnapshot on a status change and every few seconds; one publish per
snapshot costs a client call and a sidecar request per machine. `CoalescingPublisher` gathers the
snapshots published within `linger` seconds of the first (at most `max_entries`) and sends them with
one `publish_events` (the SDK's bulk publish). Each caller still waits for its own snapshot: it
returns once the sidecar accepted that entry and raises `PublishFailed` when the sidecar reported the
entry failed (or the whole call failed), so an actor sees a lost snapshot exactly as it saw a failed
single publish. Other topics (alerts) are published one by one, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection
from dataclasses import dataclass, field

from dapr.aio.clients import DaprClient
from dapr.clients import BulkPublishEntry
from pydantic import BaseModel

from apps.common.names import PUBSUB
from apps.common.publisher import Publisher, event_json

log = logging.getLogger("equipment")


class PublishFailed(RuntimeError):
    """The sidecar did not take this event (its bulk publish reported the entry failed)."""


@dataclass
class _Batch:
    data: list[str] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None


class CoalescingPublisher:
    def __init__(
        self,
        client: DaprClient,
        single: Publisher,
        topics: Collection[str],
        linger: float,
        max_entries: int,
        pubsub: str = PUBSUB,
    ) -> None:
        self.client = client
        self.single = single
        self.topics = frozenset(topics)
        self.linger = linger
        self.max_entries = max_entries
        self.pubsub = pubsub
        self._batches: dict[str, _Batch] = {}
        self._sending: set[asyncio.Task[None]] = set()

    async def publish(self, topic: str, event: BaseModel | dict) -> None:
        if topic not in self.topics:
            await self.single.publish(topic, event)
            return
        loop = asyncio.get_running_loop()
        batch = self._batches.setdefault(topic, _Batch())
        waiter: asyncio.Future[None] = loop.create_future()
        batch.data.append(event_json(event))
        batch.waiters.append(waiter)
        if len(batch.data) >= self.max_entries:
            self._send(topic)
        elif batch.timer is None:
            batch.timer = loop.call_later(self.linger, self._send, topic)
        await waiter

    def _send(self, topic: str) -> None:
        batch = self._batches.pop(topic, None)
        if batch is None:
            return
        if batch.timer is not None:
            batch.timer.cancel()
        task = asyncio.get_running_loop().create_task(
            self._publish(topic, batch), name=f"bulk publish {topic}"
        )
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _publish(self, topic: str, batch: _Batch) -> None:
        entries = [BulkPublishEntry(event=data, entry_id=str(i)) for i, data in enumerate(batch.data)]
        failed: dict[int, str] = {}
        try:
            response = await self.client.publish_events(
                self.pubsub, topic, entries, data_content_type="application/json"
            )
            for entry in response.failed_entries:
                failed[int(entry.entry_id)] = entry.error
        except Exception as exc:  # the sidecar or the call failed: every caller gets the error
            log.warning("bulk publish of %d %s events failed: %s", len(entries), topic, exc)
            for waiter in batch.waiters:
                if not waiter.done():
                    waiter.set_exception(PublishFailed(f"publishing to {topic} failed: {exc}"))
            return
        for i, waiter in enumerate(batch.waiters):
            if waiter.done():
                continue
            if i in failed:
                waiter.set_exception(PublishFailed(f"publishing to {topic} failed: {failed[i]}"))
            else:
                waiter.set_result(None)

    async def close(self) -> None:
        """Send what is waiting and wait for the sends in flight (the app stopping)."""
        for topic in list(self._batches):
            self._send(topic)
        tasks = list(self._sending)
        if tasks:
            with contextlib.suppress(Exception):
                await asyncio.gather(*tasks)
