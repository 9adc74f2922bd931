"""`pubsub.in-memory`: a process-local broker with consumer groups and redelivery.

Model: per topic, per consumer group, one FIFO queue. A publish appends the message to the queue of
every group that exists for the topic (a group exists from its first subscribe on), so each group
(app id) gets every message once. Several handlers subscribed with the same group are replicas of
one app and compete: messages go to them round robin. Messages published to a topic that no group
has ever subscribed to are discarded, as in daprd.

Delivery runs in background asyncio tasks, at most `concurrency` messages in flight per group
(metadata `concurrency`, default 1). With the default a group is strictly sequential, so messages
arrive in publish order, and a failing message holds back the ones behind it until it succeeds.

Deliberate difference from daprd: when a handler raises, daprd's in-memory component logs the error
and drops the message. localdapr redelivers it instead (to the next replica, round robin) after an
exponential backoff of 50 ms doubling up to 2 s, for as long as it takes, incrementing
`BrokerMessage.delivery_count`. That gives the at-least-once behaviour apps see on a real broker,
so their retry handling is exercised locally.

unsubscribe() cancels the handler's in-flight deliveries; those messages and everything not yet
acked stay queued for the group, so a handler that subscribes again (a sidecar restarted inside the
same process) receives them. close() cancels everything and forgets all queues.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from localdapr.components.spec import ComponentSpec
from localdapr.pubsub.base import BrokerMessage, MessageHandler, PubSubBroker, bulk_in_flight

log = logging.getLogger("localdapr.pubsub.memory")

BACKOFF_INITIAL = 0.05
BACKOFF_MAX = 2.0


@dataclass(slots=True)
class _Entry:
    """One message waiting in (or being delivered from) a group's queue."""

    topic: str
    data: bytes
    metadata: dict[str, str]
    deliveries: int = 0


@dataclass(slots=True, eq=False)
class _Delivery:
    """A message being delivered, and the replica being called right now (None while backing off)."""

    entry: _Entry | None  # None once acked or handed back to the queue
    handler: MessageHandler | None = None


@dataclass(eq=False)
class _Group:
    """The queue and replicas of one consumer group on one topic."""

    topic: str
    name: str
    concurrency: int
    queue: deque[_Entry] = field(default_factory=deque)
    handlers: list[MessageHandler] = field(default_factory=list)
    next_handler: int = 0
    in_flight: dict[asyncio.Task[None], _Delivery] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dispatcher: asyncio.Task[None] | None = None

    def pick_handler(self) -> MessageHandler | None:
        if not self.handlers:
            return None
        handler = self.handlers[self.next_handler % len(self.handlers)]
        self.next_handler = (self.next_handler + 1) % len(self.handlers)
        return handler


class InMemoryBroker(PubSubBroker):
    """Consumer-group pub/sub inside one process; see the module docstring for the semantics."""

    def __init__(self, concurrency: int = 1) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self.concurrency = concurrency
        self._groups: dict[str, dict[str, _Group]] = {}
        # Sidecars of one process share this broker, and tests run them on loops of their own threads:
        # a publish iterating a topic's groups while another thread adds one would fail ("dictionary
        # changed size during iteration"). Held only around dict and queue work, never across an await.
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_spec(cls, spec: ComponentSpec) -> InMemoryBroker:
        raw = spec.get("concurrency", "1")
        try:
            concurrency = int(raw)
        except ValueError:
            raise spec.fail(f"metadata field 'concurrency' must be an integer, got {raw!r}") from None
        if concurrency < 1:
            raise spec.fail(f"metadata field 'concurrency' must be at least 1, got {concurrency}")
        return cls(concurrency=concurrency)

    # ------------------------------------------------------------------ interface
    async def publish(self, topic: str, data: bytes, metadata: dict[str, str]) -> None:
        if self._closed:
            raise RuntimeError("pubsub.in-memory: broker is closed")
        with self._lock:
            groups = list(self._groups.get(topic, {}).values())
            for group in groups:
                group.queue.append(_Entry(topic, bytes(data), dict(metadata)))
        for group in groups:
            _wake(group)

    async def subscribe(
        self,
        topic: str,
        consumer_group: str,
        handler: MessageHandler,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        if self._closed:
            raise RuntimeError("pubsub.in-memory: broker is closed")
        with self._lock:
            groups = self._groups.setdefault(topic, {})
            group = groups.get(consumer_group)
            if group is None:
                group = groups[consumer_group] = _Group(topic, consumer_group, self.concurrency)
        group.concurrency = max(group.concurrency, bulk_in_flight(metadata))
        group.handlers.append(handler)
        if group.dispatcher is None or group.dispatcher.done():
            group.dispatcher = asyncio.create_task(
                self._dispatch(group), name=f"in-memory dispatch {topic}/{consumer_group}"
            )
        group.wake.set()

    async def unsubscribe(self, topic: str, consumer_group: str, handler: MessageHandler) -> None:
        group = self._groups.get(topic, {}).get(consumer_group)
        if group is None or handler not in group.handlers:
            return
        group.handlers.remove(handler)
        if handler in group.handlers:
            return  # the same callable is subscribed again; its deliveries keep going
        # Cancelled deliveries put their message back at the head of the queue (see _deliver).
        victims = [task for task, delivery in group.in_flight.items() if delivery.handler == handler]
        if not group.handlers:
            victims = list(group.in_flight)
            if group.dispatcher is not None:
                victims.append(group.dispatcher)
                group.dispatcher = None
        await _cancel_all(victims)
        group.wake.set()

    async def close(self) -> None:
        self._closed = True
        tasks: list[asyncio.Task[None]] = []
        with self._lock:
            all_groups = [group for groups in self._groups.values() for group in groups.values()]
        for group in all_groups:
            tasks += list(group.in_flight)
            if group.dispatcher is not None:
                tasks.append(group.dispatcher)
                group.dispatcher = None
            group.handlers.clear()
        await _cancel_all(tasks)
        with self._lock:
            self._groups.clear()

    # ------------------------------------------------------------------ introspection (tests, metadata)
    def pending(self, topic: str, consumer_group: str) -> int:
        """Messages queued or in flight (not yet acked) for a group."""
        group = self._groups.get(topic, {}).get(consumer_group)
        return 0 if group is None else len(group.queue) + len(group.in_flight)

    # ------------------------------------------------------------------ delivery
    async def _dispatch(self, group: _Group) -> None:
        """Start deliveries while there are messages, replicas and free concurrency slots."""
        while True:
            group.wake.clear()
            while group.queue and group.handlers and len(group.in_flight) < group.concurrency:
                delivery = _Delivery(group.queue.popleft())
                task = asyncio.create_task(
                    self._deliver(group, delivery), name=f"in-memory deliver {group.topic}/{group.name}"
                )
                group.in_flight[task] = delivery
                task.add_done_callback(lambda t, g=group: _finished(g, t))
            await group.wake.wait()

    async def _deliver(self, group: _Group, delivery: _Delivery) -> None:
        """Hand one message to replicas until one returns normally (ack).

        Returns early, putting the message back at the head of the queue, when every replica is
        gone; a cancelled delivery is requeued by `_finished` (a task cancelled before its first
        step never runs this body, so the requeue cannot live in an except clause here).
        """
        entry = delivery.entry
        assert entry is not None
        delay = BACKOFF_INITIAL
        while True:
            handler = group.pick_handler()
            if handler is None:
                group.queue.appendleft(entry)
                delivery.entry = None
                return
            entry.deliveries += 1
            message = BrokerMessage(
                topic=entry.topic,
                data=entry.data,
                metadata=dict(entry.metadata),
                delivery_count=entry.deliveries,
            )
            delivery.handler = handler
            try:
                await handler(message)
                delivery.entry = None  # acked
                return
            except Exception as exc:
                log.warning(
                    "in-memory: handler for %s/%s failed on delivery %d (%s); redelivering in %.2fs",
                    group.topic,
                    group.name,
                    entry.deliveries,
                    exc,
                    delay,
                )
            finally:
                delivery.handler = None
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)


def _wake(group: _Group) -> None:
    """Wake the group's dispatcher, on its own loop when the publisher runs on another one.

    Sidecars of one process share this broker; tests run them on loops of their own threads. An
    asyncio.Event set from a foreign thread would schedule its waiter without waking that loop's
    selector, so the delivery would wait for whatever next woke the loop.
    """
    dispatcher = group.dispatcher
    loop = dispatcher.get_loop() if dispatcher is not None else None
    if loop is None or loop is asyncio.get_running_loop():
        group.wake.set()
    elif not loop.is_closed():  # a closed loop's dispatcher is gone; the next subscribe starts one
        loop.call_soon_threadsafe(group.wake.set)


def _finished(group: _Group, task: asyncio.Task[None]) -> None:
    delivery = group.in_flight.pop(task, None)
    if delivery is not None and delivery.entry is not None:
        # Cancelled (a replica left, or close) or crashed before an ack: the message stays queued.
        group.queue.appendleft(delivery.entry)
    group.wake.set()
    if not task.cancelled() and task.exception() is not None:
        log.error("in-memory: delivery task failed", exc_info=task.exception())


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel tasks and wait until they have finished, so no handler runs after we return."""
    current = asyncio.current_task()
    tasks = [t for t in tasks if t is not current and not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
