"""pubsub.rabbitmq against the real RabbitMQ: contrib's topology, ack after success, requeueInFailure,
the dead-letter exchange, routing keys; and through localdapr sidecars with the official SDK and a
FastAPI app, including a subscriber sidecar killed mid-stream.

Every test uses random topic names (exchanges) and app ids (queues) and deletes what it declared.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aio_pika
import httpx
import pytest
from dapr.clients import DaprClient

from localdapr.components.spec import ComponentSpec
from localdapr.errors import ComponentError
from localdapr.pubsub.base import BrokerMessage, NotProcessed
from localdapr.pubsub.rabbitmq import RabbitMQBroker
from localdapr.sidecar import Sidecar, SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port, wait_until
from tests.integration.localdapr.components import component, unique, write
from tests.integration.localdapr.crash import assert_subscriber_crash_loses_nothing
from tests.integration.localdapr.test_brokers import wait_for

APP = "tests.integration.localdapr.sidecar_apps.echo_app:app"
REPO = Path(__file__).resolve().parents[3]
# What the ready profile sets: durable queues that outlive their consumers, persistent messages,
# confirmed publishes, failed deliveries requeued.
PROFILE = {
    "durable": "true",
    "deletedWhenUnused": "false",
    "deliveryMode": "2",
    "publisherConfirm": "true",
    "requeueInFailure": "true",
    "prefetchCount": "20",
}


class Declared:
    """Brokers built for one test, and every exchange and queue name to delete afterwards."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.brokers: list[RabbitMQBroker] = []
        self.exchanges: set[str] = set()
        self.queues: set[str] = set()

    async def broker(self, **metadata: str) -> RabbitMQBroker:
        spec = ComponentSpec(
            "pubsub",
            "pubsub.rabbitmq",
            "v1",
            [],
            [],
            None,
            Path("p.yaml"),
            metadata={"connectionString": self.url, **metadata},
        )
        broker = RabbitMQBroker.from_spec(spec)
        await broker.init()
        self.brokers.append(broker)
        return broker

    def topic(self, label: str, *groups: str) -> str:
        topic = f"test-rmq-{label}-{uuid.uuid4().hex[:8]}"
        self.track(topic, *groups)
        return topic

    def track(self, topic: str, *groups: str) -> None:
        self.exchanges.add(topic)
        for group in groups:
            queue = f"{group}-{topic}"
            self.queues |= {queue, f"dlq-{queue}"}
            self.exchanges.add(f"dlx-{queue}")

    async def cleanup(self) -> None:
        for broker in self.brokers:
            await broker.close()
        connection = await aio_pika.connect(self.url)
        async with connection:
            for name in self.queues:
                channel = await connection.channel()
                await channel.queue_delete(name)
            for name in self.exchanges:
                channel = await connection.channel()
                await channel.exchange_delete(name)


@pytest.fixture
async def declared(rabbitmq_url: str) -> AsyncIterator[Declared]:
    found = Declared(rabbitmq_url)
    yield found
    await found.cleanup()


async def queue_depth(url: str, queue: str) -> int:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        found = await channel.declare_queue(queue, passive=True)
        return int(found.declaration_result.message_count or 0)


# ---------------------------------------------------------------------- the broker


async def test_each_group_gets_every_message_and_replicas_split_them(declared: Declared) -> None:
    broker = await declared.broker(**PROFILE)
    topic = declared.topic("groups", "app-a", "app-b")
    seen: Counter[str] = Counter()
    per_replica: Counter[int] = Counter()

    def recorder(group: str, replica: int = 0):  # type: ignore[no-untyped-def]
        async def handler(msg: BrokerMessage) -> None:
            seen[f"{group}:{msg.data.decode()}"] += 1
            per_replica[replica] += 1

        return handler

    await broker.subscribe(topic, "app-a", recorder("app-a", 1))
    await broker.subscribe(topic, "app-a", recorder("app-a", 2))
    await broker.subscribe(topic, "app-b", recorder("app-b"))
    for i in range(40):
        await broker.publish(topic, str(i).encode(), {})
    await wait_for(lambda: len(seen) == 80, "every message in both groups")
    assert set(seen.values()) == {1}, "each group gets each message once"
    assert per_replica[1] and per_replica[2], "replicas of one app compete for its queue"


async def test_contrib_topology(declared: Declared, rabbitmq_url: str) -> None:
    """Exchange per topic, durable queue <consumerID>-<topic> that outlives its consumers, dlx/dlq."""
    broker = await declared.broker(**PROFILE, enableDeadLetter="true", maxLen="1000")
    topic = declared.topic("topology", "app")
    done = asyncio.Event()

    async def handler(msg: BrokerMessage) -> None:
        done.set()

    await broker.subscribe(topic, "app", handler)
    await broker.unsubscribe(topic, "app", handler)
    await broker.publish(topic, b"kept", {})  # confirmed once queued: the durable queue keeps it
    assert await queue_depth(rabbitmq_url, f"app-{topic}") == 1
    assert await queue_depth(rabbitmq_url, f"dlq-app-{topic}") == 0
    await broker.subscribe(topic, "app", handler)
    await asyncio.wait_for(done.wait(), 10)


async def test_failed_message_is_requeued_until_it_succeeds(declared: Declared) -> None:
    broker = await declared.broker(**PROFILE)
    topic = declared.topic("requeue", "app")
    attempts: list[int] = []

    async def flaky(msg: BrokerMessage) -> None:
        attempts.append(msg.delivery_count)
        if len(attempts) < 3:
            raise NotProcessed("not yet")

    await broker.subscribe(topic, "app", flaky)
    await broker.publish(topic, b"x", {})
    await wait_for(lambda: len(attempts) == 3, "two failures and a success")
    assert attempts[0] == 1 and attempts[1] >= 2, "redeliveries are counted"


async def test_without_requeue_a_failed_message_goes_to_the_dead_letter_queue(
    declared: Declared, rabbitmq_url: str
) -> None:
    broker = await declared.broker(**{**PROFILE, "requeueInFailure": "false"}, enableDeadLetter="true")
    topic = declared.topic("dlx", "app")

    async def failing(msg: BrokerMessage) -> None:
        raise NotProcessed("poison")

    await broker.subscribe(topic, "app", failing)
    await broker.publish(topic, b"poison", {})

    async def dead_lettered() -> bool:
        return await queue_depth(rabbitmq_url, f"dlq-app-{topic}") == 1

    await wait_for(dead_lettered, "the message in dlq-app-<topic>")
    assert await queue_depth(rabbitmq_url, f"app-{topic}") == 0


async def test_routing_keys_select_messages(declared: Declared) -> None:
    broker = await declared.broker(**PROFILE, exchangeKind="topic")
    topic = declared.topic("routing", "eu", "all")
    got: dict[str, list[bytes]] = {"eu": [], "all": []}

    def recorder(group: str):  # type: ignore[no-untyped-def]
        async def handler(msg: BrokerMessage) -> None:
            got[group].append(msg.data)

        return handler

    await broker.subscribe(topic, "eu", recorder("eu"), {"routingKey": "eu.*"})
    await broker.subscribe(topic, "all", recorder("all"), {"routingKey": "eu.*,us.*"})
    for key in ("eu.de", "us.ny", "asia.jp"):
        await broker.publish(topic, key.encode(), {"routingKey": key})
    await wait_for(lambda: len(got["all"]) == 2 and len(got["eu"]) == 1, "routed messages")
    assert got["eu"] == [b"eu.de"] and sorted(got["all"]) == [b"eu.de", b"us.ny"]


async def test_stopped_consumer_leaves_unacked_messages_to_the_queue(declared: Declared) -> None:
    broker = await declared.broker(**PROFILE)
    topic = declared.topic("stop", "app")
    entered = asyncio.Event()
    received: list[bytes] = []

    async def stuck(msg: BrokerMessage) -> None:
        entered.set()
        await asyncio.Event().wait()

    async def ok(msg: BrokerMessage) -> None:
        received.append(msg.data)

    await broker.subscribe(topic, "app", stuck)
    await broker.publish(topic, b"in-flight", {})
    await asyncio.wait_for(entered.wait(), 10)
    await broker.unsubscribe(topic, "app", stuck)
    await broker.subscribe(topic, "app", ok)
    await wait_for(lambda: received == [b"in-flight"], "the unacked message redelivered")


async def test_unreachable_broker_and_bad_metadata(tmp_path: Path) -> None:
    write(
        tmp_path,
        "p.yaml",
        component("pubsub", "pubsub.rabbitmq", {"connectionString": "amqp://guest:guest@127.0.0.1:1/"}),
    )
    with pytest.raises(ComponentError, match=r"cannot connect to RabbitMQ at 127\.0\.0\.1:1/"):
        await Sidecar(SidecarOptions(app_id="x", resources_paths=[tmp_path], registry_dir=tmp_path)).start()
    for metadata, message in (
        ({"connectionString": "http://x"}, "invalid connection string"),
        ({"connectionString": "amqp://h", "deliveryMode": "3"}, "accepted values are between 0 and 2"),
        ({"connectionString": "amqp://h", "exchangeKind": "nope"}, "invalid RabbitMQ exchange kind"),
    ):
        spec = ComponentSpec("p", "pubsub.rabbitmq", "v1", [], [], None, Path("p.yaml"), metadata=metadata)
        with pytest.raises(ComponentError, match=message):
            RabbitMQBroker.from_spec(spec)


# ---------------------------------------------------------------------- through sidecars, with the SDK


@pytest.fixture
def resources(tmp_path: Path, rabbitmq_url: str) -> Path:
    write(
        tmp_path / "res",
        "pubsub.yaml",
        component("pubsub", "pubsub.rabbitmq", {"connectionString": rabbitmq_url, **PROFILE}),
    )
    return tmp_path / "res"


def received(port: int, topic: str) -> list[dict]:
    return httpx.get(f"http://127.0.0.1:{port}/received/{topic}", timeout=5).json()


@pytest.fixture
def sdk_cleanup(rabbitmq_url: str) -> Iterator[Declared]:
    found = Declared(rabbitmq_url)
    yield found
    asyncio.run(found.cleanup())


def test_sdk_publish_reaches_the_app_and_failures_are_redelivered(
    tmp_path: Path, resources: Path, sdk_cleanup: Declared, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub_id, prefix = unique("sub"), unique("rmq") + "-"
    for name in ("orders", "flaky", "poison", "poison-dead", "raw"):
        sdk_cleanup.track(prefix + name, sub_id)
    port = free_port()
    subscriber = SidecarThread(
        SidecarOptions(
            app_id=sub_id, resources_paths=[resources], app_port=port, registry_dir=tmp_path / "reg"
        )
    ).start()
    app = AppProcess(
        APP,
        port,
        subscriber.options.app_env(),
        {"TOPIC_PREFIX": prefix, "FAIL_FIRST": "3"},
        cwd=REPO,
        name=sub_id,
    ).start()
    publisher = SidecarThread(
        SidecarOptions(app_id=unique("pub"), resources_paths=[resources], registry_dir=tmp_path / "reg")
    ).start()
    try:
        subscriber.wait_app_ready()
        monkeypatch.setenv("DAPR_HTTP_PORT", str(publisher.http_port))
        with DaprClient(address=publisher.grpc_address) as client:
            client.publish_event(
                "pubsub", prefix + "orders", json.dumps({"order": 7}), data_content_type="application/json"
            )
            for i in range(4):
                client.publish_event(
                    "pubsub", prefix + "flaky", json.dumps({"n": i}), data_content_type="application/json"
                )
            client.publish_event(
                "pubsub", prefix + "poison", json.dumps({"bad": True}), data_content_type="application/json"
            )
        event = wait_until(lambda: received(port, "orders"), timeout=15, what="order delivered")[0]
        assert event["data"] == {"order": 7} and event["source"] == publisher.options.app_id
        assert event["topic"] == prefix + "orders" and event["pubsubname"] == "pubsub"
        flaky = wait_until(lambda: len(received(port, "flaky")) >= 4 and received(port, "flaky"), timeout=30)
        assert sorted(e["data"]["n"] for e in flaky) == [0, 1, 2, 3], "RETRY and 500 requeued until success"
        dead = wait_until(lambda: received(port, "poison-dead"), timeout=15, what="Dapr dead-letter topic")
        assert dead[0]["data"] == {"bad": True}
    finally:
        app.stop()
        subscriber.stop()
        publisher.stop()


def test_subscriber_sidecar_killed_mid_stream_loses_nothing(
    tmp_path: Path, resources: Path, sdk_cleanup: Declared, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Deliveries held by the app when its sidecar is SIGKILLed come back after the restart."""
    sub_id, prefix = unique("sub"), unique("crash") + "-"
    for name in ("orders", "flaky", "poison", "poison-dead", "raw"):
        sdk_cleanup.track(prefix + name, sub_id)
    assert_subscriber_crash_loses_nothing(tmp_path, resources, sub_id, prefix, monkeypatch)
