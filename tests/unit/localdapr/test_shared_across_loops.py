"""In-memory components shared by sidecars on event loops of different threads (as tests run them)."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator

import pytest

from localdapr.pubsub.base import BrokerMessage
from localdapr.pubsub.memory import InMemoryBroker
from localdapr.state.base import EtagMismatch, StateItem, TransactionOp
from localdapr.state.memory import InMemoryStateStore

THREADS = 4
INCREMENTS = 400


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    # Threads switch every few microseconds instead of every 5 ms, so they meet inside the store's
    # short critical sections often enough for a loop-bound lock to fail.
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


async def increment(store: InMemoryStateStore, key: str) -> None:
    """Read, add one, write back with the etag read; a lost race reads again (optimistic concurrency)."""
    while True:
        current = await store.get(key)
        assert current is not None, "the counter is written before the threads start"
        item = StateItem(key, str(int(current.data) + 1).encode(), etag=current.etag)
        try:
            await store.transact([TransactionOp("upsert", item)])
            return
        except EtagMismatch:
            continue


def test_loops_on_several_threads_share_one_store(frequent_thread_switches: None) -> None:
    store = InMemoryStateStore()
    # Written first, so every increment carries an etag (a first write without one would be last-write-wins).
    asyncio.run(store.set(StateItem("counter", b"0")))
    errors: list[BaseException] = []

    def sidecar_loop() -> None:
        async def run() -> None:
            await asyncio.gather(*(increment(store, "counter") for _ in range(INCREMENTS)))

        try:
            asyncio.run(run())
        except BaseException as exc:  # noqa: BLE001 - the test reports what a thread raised
            errors.append(exc)

    threads = [threading.Thread(target=sidecar_loop, daemon=True) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads), "a loop hung waiting on the store"
    assert errors == []
    final = asyncio.run(store.get("counter"))
    assert final is not None and int(final.data) == THREADS * INCREMENTS


def test_publish_from_another_loop_wakes_an_idle_subscriber_loop() -> None:
    broker = InMemoryBroker()
    subscribed = threading.Event()
    received: list[bytes] = []
    delivered = threading.Event()
    stop: list[asyncio.Event] = []
    loops: list[asyncio.AbstractEventLoop] = []

    def subscriber_loop() -> None:
        async def run() -> None:
            async def handler(message: BrokerMessage) -> None:
                received.append(message.data)
                delivered.set()

            stop.append(asyncio.Event())
            loops.append(asyncio.get_running_loop())
            await broker.subscribe("orders", "shipping", handler)
            subscribed.set()
            await stop[0].wait()  # nothing else would wake this loop: no timers, no sockets
            await broker.close()

        asyncio.run(run())

    thread = threading.Thread(target=subscriber_loop, daemon=True)
    thread.start()
    assert subscribed.wait(10)
    asyncio.run(broker.publish("orders", b"order-1", {}))
    try:
        assert delivered.wait(10), "the subscriber's loop was never woken for the message"
        assert received == [b"order-1"]
    finally:
        loops[0].call_soon_threadsafe(stop[0].set)
        thread.join(10)


def test_groups_subscribing_on_one_loop_while_another_publishes(frequent_thread_switches: None) -> None:
    broker = InMemoryBroker()
    groups = 300
    publishes = 300
    first_group_received: list[bytes] = []
    errors: list[BaseException] = []
    first_subscribed = threading.Event()
    published = threading.Event()

    def subscriber_loop() -> None:
        # One loop adds a consumer group after another to the topic the other thread publishes to.
        async def run() -> None:
            async def first(message: BrokerMessage) -> None:
                first_group_received.append(message.data)

            async def others(message: BrokerMessage) -> None:
                pass

            await broker.subscribe("readings", "group-0", first)
            first_subscribed.set()
            for n in range(1, groups):
                await broker.subscribe("readings", f"group-{n}", others)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, published.wait, 30)
            deadline = loop.time() + 30
            while len(first_group_received) < publishes and not errors and loop.time() < deadline:
                await asyncio.sleep(0.01)
            await broker.close()

        try:
            asyncio.run(run())
        except BaseException as exc:  # noqa: BLE001 - the test reports what a thread raised
            errors.append(exc)

    def publisher_loop() -> None:
        async def run() -> None:
            for n in range(publishes):
                await broker.publish("readings", str(n).encode(), {})

        try:
            asyncio.run(run())
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            published.set()

    subscriber = threading.Thread(target=subscriber_loop, daemon=True)
    subscriber.start()
    assert first_subscribed.wait(10)
    publisher = threading.Thread(target=publisher_loop, daemon=True)
    publisher.start()
    publisher.join(30)
    subscriber.join(40)
    assert not subscriber.is_alive() and not publisher.is_alive(), "a loop hung"
    assert errors == []
    # The group that existed before the first publish gets every message, in publish order.
    assert first_group_received == [str(n).encode() for n in range(publishes)]
