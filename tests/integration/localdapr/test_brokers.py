"""Both pub/sub brokers through the PubSubBroker interface: groups, replicas, redelivery, crashes.

The Redis tests use the server from the `redis_url` fixture (skipped with the reason when it is
unreachable), random topic names, and delete their streams afterwards. Waiting is always on a
condition with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from localdapr.components.spec import ComponentSpec
from localdapr.errors import ComponentError
from localdapr.pubsub.base import BrokerMessage, NotProcessed, PubSubBroker
from localdapr.pubsub.memory import InMemoryBroker
from localdapr.pubsub.redis_streams import RedisStreamsBroker
from localdapr.redisconn import parse_redis_host


async def wait_for(condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    """Poll `condition` (sync or async) until it holds; fail naming `what` after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = condition()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


def spec_of(ctype: str, metadata: dict[str, str]) -> ComponentSpec:
    return ComponentSpec(
        name="pubsub",
        type=ctype,
        version="v1",
        entries=[],
        scopes=[],
        secret_store=None,
        file=Path("pubsub.yaml"),
        metadata=dict(metadata),
    )


def _redis_address(url: str) -> str:
    """host:port from whatever the fixture gives (`host:port` or `redis://[user@]host:port/db`)."""
    address = url.split("://", 1)[-1].split("/", 1)[0]
    return address.rsplit("@", 1)[-1]


class Brokers:
    """Builds initialised brokers of one kind and random topic names; cleans both up afterwards."""

    def __init__(self, kind: str, redis_host: str = "") -> None:
        self.kind = kind
        self.redis_host = redis_host
        self._brokers: list[PubSubBroker] = []
        self._topics: list[str] = []

    async def new(self, **metadata: str) -> PubSubBroker:
        broker: PubSubBroker
        if self.kind == "in-memory":
            broker = InMemoryBroker.from_spec(spec_of("pubsub.in-memory", metadata))
        else:
            spec = spec_of("pubsub.redis", {"redisHost": self.redis_host, **metadata})
            broker = RedisStreamsBroker.from_spec(spec)
        await broker.init()
        self._brokers.append(broker)
        return broker

    def topic(self, label: str) -> str:
        topic = f"test-brokers-{label}-{uuid.uuid4().hex[:10]}"
        self._topics.append(topic)
        return topic

    async def pending(self, topic: str, group: str) -> int:
        """Entries delivered but not acked in a Redis group (XPENDING summary)."""
        async with self._redis() as client:
            return int((await client.xpending(topic, group))["pending"])

    def _redis(self) -> aioredis.Redis:
        host, port = parse_redis_host(self.redis_host)
        return aioredis.Redis(host=host, port=port)

    async def cleanup(self) -> None:
        for broker in self._brokers:
            await broker.close()
        if self.kind == "redis" and self._topics:
            async with self._redis() as client:
                await client.delete(*self._topics)


@pytest.fixture
def redis_host(request: pytest.FixtureRequest) -> str:
    """The Redis address for redisHost; skips (with the reason) when Redis is unreachable."""
    try:
        url = str(request.getfixturevalue("redis_url"))
    except pytest.FixtureLookupError:
        # tests/conftest.py (shared) provides redis_url; without it, check the default address here.
        url = "127.0.0.1:6379"
        try:
            socket.create_connection(parse_redis_host(url), timeout=1).close()
        except OSError as exc:
            pytest.skip(f"Redis is not reachable at {url}: {exc}")
    return _redis_address(url)


@pytest.fixture(params=["in-memory", "redis"])
async def brokers(request: pytest.FixtureRequest) -> AsyncIterator[Brokers]:
    kind = str(request.param)
    factory = Brokers(kind, request.getfixturevalue("redis_host") if kind == "redis" else "")
    yield factory
    await factory.cleanup()


@pytest.fixture
async def redis_brokers(redis_host: str) -> AsyncIterator[Brokers]:
    factory = Brokers("redis", redis_host)
    yield factory
    await factory.cleanup()


# ---------------------------------------------------------------------- both brokers


async def test_every_group_gets_each_message_once(brokers: Brokers) -> None:
    broker = await brokers.new()
    topic = brokers.topic("groups")
    received: dict[str, list[bytes]] = defaultdict(list)

    def recorder(group: str) -> Callable[[BrokerMessage], Awaitable[None]]:
        async def handler(msg: BrokerMessage) -> None:
            assert msg.topic == topic
            received[group].append(msg.data)

        return handler

    for group in ("app-a", "app-b"):
        await broker.subscribe(topic, group, recorder(group))
    published = [f"m{i}".encode() for i in range(20)]
    for data in published:
        await broker.publish(topic, data, {"k": "v"})

    await wait_for(lambda: all(len(received[g]) >= 20 for g in ("app-a", "app-b")), "both groups")
    for group in ("app-a", "app-b"):
        assert Counter(received[group]) == Counter(published), group
    if brokers.kind == "in-memory":
        assert received["app-a"] == published  # sequential by default: publish order


async def test_metadata_travels_with_the_message(brokers: Brokers) -> None:
    broker = await brokers.new()
    topic = brokers.topic("meta")
    got: list[BrokerMessage] = []

    async def handler(msg: BrokerMessage) -> None:
        got.append(msg)

    await broker.subscribe(topic, "app", handler)
    await broker.publish(topic, b"\x00\xffbinary", {"rawPayload": "true", "traceparent": "00-abc"})
    await wait_for(lambda: len(got) == 1, "the message")
    assert got[0].data == b"\x00\xffbinary"
    assert got[0].metadata == {"rawPayload": "true", "traceparent": "00-abc"}
    assert got[0].delivery_count == 1


async def test_replicas_in_one_group_split_the_messages(brokers: Brokers) -> None:
    # queueDepth/concurrency 1 bound what one Redis consumer can hold, so the other must get some.
    broker = await brokers.new(queueDepth="1", concurrency="1")
    topic = brokers.topic("replicas")
    seen: dict[str, list[bytes]] = {"r1": [], "r2": []}

    def replica(name: str) -> Callable[[BrokerMessage], Awaitable[None]]:
        async def handler(msg: BrokerMessage) -> None:
            await asyncio.sleep(0.01)
            seen[name].append(msg.data)

        return handler

    await broker.subscribe(topic, "app", replica("r1"))
    await broker.subscribe(topic, "app", replica("r2"))
    published = [f"job{i}".encode() for i in range(20)]
    for data in published:
        await broker.publish(topic, data, {})

    await wait_for(lambda: len(seen["r1"]) + len(seen["r2"]) >= 20, "all jobs")
    overall = seen["r1"] + seen["r2"]
    assert Counter(overall) == Counter(published)  # each job processed exactly once overall
    assert seen["r1"] and seen["r2"], seen
    if brokers.kind == "in-memory":
        assert len(seen["r1"]) == len(seen["r2"]) == 10  # round robin


async def test_failing_handler_gets_the_message_again_until_it_succeeds(brokers: Brokers) -> None:
    failures = 3
    broker = await brokers.new(processingTimeout="300ms", redeliverInterval="100ms")
    topic = brokers.topic("retry")
    counts: dict[bytes, list[int]] = defaultdict(list)
    done: list[bytes] = []

    async def handler(msg: BrokerMessage) -> None:
        counts[msg.data].append(msg.delivery_count)
        if len(counts[msg.data]) <= failures:
            raise NotProcessed(f"not yet ({len(counts[msg.data])})")
        done.append(msg.data)

    await broker.subscribe(topic, "app", handler)
    published = [b"a", b"b", b"c"]
    for data in published:
        await broker.publish(topic, data, {})

    await wait_for(lambda: len(done) >= 3, "every message to succeed", timeout=15)
    assert sorted(done) == published  # succeeded once each
    for data in published:
        assert counts[data] == [1, 2, 3, 4], data
    # Nothing left unacked, so nothing will be delivered again.
    if isinstance(broker, InMemoryBroker):
        await wait_for(lambda: broker.pending(topic, "app") == 0, "the in-memory queue to drain")
    else:
        assert await brokers.pending(topic, "app") == 0
    assert all(len(c) == 4 for c in counts.values())


async def test_unsubscribed_consumer_leaves_its_messages_for_the_group(brokers: Brokers) -> None:
    broker = await brokers.new(processingTimeout="500ms", redeliverInterval="200ms")
    topic = brokers.topic("restart")
    first: list[BrokerMessage] = []
    cancelled: list[bytes] = []

    async def stuck(msg: BrokerMessage) -> None:
        first.append(msg)
        try:
            await asyncio.Event().wait()  # a sidecar that never answers
        except asyncio.CancelledError:
            cancelled.append(msg.data)
            raise

    await broker.subscribe(topic, "app", stuck)
    for i in range(3):
        await broker.publish(topic, f"e{i}".encode(), {})
    await wait_for(lambda: len(first) >= 1, "the first delivery")
    await broker.unsubscribe(topic, "app", stuck)
    assert cancelled, "unsubscribe must cancel the in-flight handler"
    for i in range(3, 5):
        await broker.publish(topic, f"e{i}".encode(), {})

    second: list[BrokerMessage] = []

    async def healthy(msg: BrokerMessage) -> None:
        second.append(msg)

    await broker.subscribe(topic, "app", healthy)
    await wait_for(lambda: len({m.data for m in second}) >= 5, "all five events after the restart")
    assert sorted({m.data for m in second}) == [f"e{i}".encode() for i in range(5)]
    redelivered = {m.data: m.delivery_count for m in second}
    for m in first:
        assert redelivered[m.data] == 2, m.data
    if isinstance(broker, InMemoryBroker):
        assert [m.data for m in second] == [f"e{i}".encode() for i in range(5)]  # order kept


# ---------------------------------------------------------------------- Redis only


async def test_redis_delivers_messages_published_before_the_first_subscribe(
    redis_brokers: Brokers,
) -> None:
    broker = await redis_brokers.new()
    topic = redis_brokers.topic("early")
    published = [f"early{i}".encode() for i in range(5)]
    for data in published:
        await broker.publish(topic, data, {})
    got: list[bytes] = []

    async def handler(msg: BrokerMessage) -> None:
        got.append(msg.data)

    await broker.subscribe(topic, "late-app", handler)
    await wait_for(lambda: len(got) >= 5, "the early messages")
    assert sorted(got) == published


async def test_redis_crashed_consumer_messages_are_reclaimed_by_a_new_instance(
    redis_brokers: Brokers,
) -> None:
    settings = {"processingTimeout": "1s", "redeliverInterval": "1s"}
    topic = redis_brokers.topic("crash")
    group = "crashy-app"
    published = [f"order{i}".encode() for i in range(10)]
    processed: Counter[bytes] = Counter()
    delivered_to_crashed: list[bytes] = []
    acked_before_crash = 3

    async def crashing(msg: BrokerMessage) -> None:
        delivered_to_crashed.append(msg.data)
        if len(delivered_to_crashed) <= acked_before_crash:
            processed[msg.data] += 1
            return
        await asyncio.Event().wait()  # hangs until the process "dies"

    first = await redis_brokers.new(**settings)
    await first.subscribe(topic, group, crashing)
    for data in published:
        await first.publish(topic, data, {})
    await wait_for(lambda: len(delivered_to_crashed) >= 10, "all messages to reach the doomed consumer")

    async def only_hung_ones_pending() -> bool:
        return await redis_brokers.pending(topic, group) == 10 - acked_before_crash

    # The first three were acked; wait for those XACKs so the crash cannot undo them.
    await wait_for(only_hung_ones_pending, "XPENDING to show exactly the hung entries")
    await first.close()  # the crash: nothing more is acked

    second = await redis_brokers.new(**settings)
    counts: dict[bytes, int] = {}

    async def survivor(msg: BrokerMessage) -> None:
        processed[msg.data] += 1
        counts[msg.data] = msg.delivery_count

    await second.subscribe(topic, group, survivor)
    await wait_for(lambda: sum(processed.values()) >= 10, "the survivor to process the rest", timeout=10)
    assert processed == Counter(published)  # none lost, none processed twice
    assert len(counts) == 10 - acked_before_crash
    assert set(counts.values()) == {2}  # delivered once to the crashed consumer, once here
    assert await redis_brokers.pending(topic, group) == 0


# ---------------------------------------------------------------------- configuration


async def test_redis_init_names_the_unreachable_address() -> None:
    broker = RedisStreamsBroker.from_spec(spec_of("pubsub.redis", {"redisHost": "127.0.0.1:1"}))
    with pytest.raises(ConnectionError, match=r"127\.0\.0\.1:1"):
        await broker.init()
    await broker.close()


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({}, "redisHost"),
        ({"redisHost": "localhost:notaport"}, "notaport"),
        ({"redisHost": "localhost:6379", "processingTimeout": "15 seconds"}, "processingTimeout"),
        ({"redisHost": "localhost:6379", "concurrency": "0"}, "concurrency"),
        ({"redisHost": "localhost:6379", "queueDepth": "many"}, "queueDepth"),
        ({"redisHost": "localhost:6379", "enableTLS": "maybe"}, "enableTLS"),
    ],
)
def test_redis_rejects_bad_metadata(metadata: dict[str, str], message: str) -> None:
    with pytest.raises(ComponentError, match=message):
        RedisStreamsBroker.from_spec(spec_of("pubsub.redis", metadata))


def test_redis_metadata_defaults_follow_daprd() -> None:
    s = RedisStreamsBroker.from_spec(spec_of("pubsub.redis", {"redisHost": "redis.local"})).settings
    assert (s.host, s.port, s.db, s.tls) == ("redis.local", 6379, 0, False)
    assert (s.processing_timeout, s.redeliver_interval) == (15.0, 60.0)
    assert (s.queue_depth, s.concurrency, s.max_len_approx) == (100, 10, 0)
    off = RedisStreamsBroker.from_spec(
        spec_of("pubsub.redis", {"redisHost": "[::1]:7000", "processingTimeout": "0"})
    ).settings
    assert (off.host, off.port, off.redelivery_enabled) == ("::1", 7000, False)


def test_in_memory_rejects_bad_concurrency() -> None:
    with pytest.raises(ComponentError, match="concurrency"):
        InMemoryBroker.from_spec(spec_of("pubsub.in-memory", {"concurrency": "zero"}))
