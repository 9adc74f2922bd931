"""pubsub.mqtt3 against the real MQTT broker (Mosquitto): QoS 1 sessions kept with clean session off,
PUBACK only after success, wildcards and retain as contrib; and through localdapr sidecars with the
official SDK and a FastAPI app, including a gateway publishing straight to the broker and a
subscriber sidecar killed mid-stream.

Topics and client ids are random per test; the sessions a test leaves on the broker are cleared
(a clean-session connect with the same client id) and retained messages deleted afterwards.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import paho.mqtt.client as paho
import pytest
from dapr.clients import DaprClient
from paho.mqtt.enums import CallbackAPIVersion

from localdapr.components.spec import ComponentSpec
from localdapr.errors import ComponentError
from localdapr.pubsub.base import BrokerMessage, NotProcessed
from localdapr.pubsub.mqtt import MQTTBroker
from localdapr.sidecar import Sidecar, SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port, wait_until
from tests.integration.localdapr.components import component, unique, write
from tests.integration.localdapr.crash import assert_subscriber_crash_loses_nothing
from tests.integration.localdapr.test_brokers import wait_for

APP = "tests.integration.localdapr.sidecar_apps.echo_app:app"
REPO = Path(__file__).resolve().parents[3]


def raw_client(url: str, client_id: str = "", clean: bool = True) -> paho.Client:
    """A plain MQTT client, as a gateway or an operator's tool would use."""
    parts = urlsplit(url)
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    client.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    client.loop_start()
    return client


class Sessions:
    """Brokers built for one test; the client ids and retained topics to clear afterwards."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.brokers: list[MQTTBroker] = []
        self.client_ids: set[str] = set()
        self.retained: set[str] = set()

    async def broker(self, **metadata: str) -> MQTTBroker:
        spec = ComponentSpec(
            "pubsub",
            "pubsub.mqtt3",
            "v1",
            [],
            [],
            None,
            Path("p.yaml"),
            metadata={"url": self.url, **metadata},
        )
        broker = MQTTBroker.from_spec(spec)
        await broker.init()
        self.brokers.append(broker)
        return broker

    def topic(self, label: str) -> str:
        return f"test-mqtt/{label}/{uuid.uuid4().hex[:8]}"

    def group(self, label: str) -> str:
        group = f"{label}-{uuid.uuid4().hex[:8]}"
        self.client_ids.add(group)
        return group

    def clear(self) -> None:
        for client_id in self.client_ids:
            client = raw_client(self.url, client_id, clean=True)  # a clean session discards the old one
            client.disconnect()
            client.loop_stop()
        if self.retained:
            client = raw_client(self.url)
            for topic in self.retained:
                client.publish(topic, b"", qos=1, retain=True).wait_for_publish(5)  # empty = delete
            client.disconnect()
            client.loop_stop()

    async def cleanup(self) -> None:
        for broker in self.brokers:
            await broker.close()
        await asyncio.to_thread(self.clear)


@pytest.fixture
async def sessions(mqtt_url: str) -> AsyncIterator[Sessions]:
    found = Sessions(mqtt_url)
    yield found
    await found.cleanup()


# ---------------------------------------------------------------------- the broker


async def test_each_group_gets_every_message_and_replicas_split_them(sessions: Sessions) -> None:
    broker = await sessions.broker()
    topic, a, b = sessions.topic("groups"), sessions.group("app-a"), sessions.group("app-b")
    seen: Counter[str] = Counter()
    per_replica: Counter[int] = Counter()

    def recorder(group: str, replica: int = 0):  # type: ignore[no-untyped-def]
        async def handler(msg: BrokerMessage) -> None:
            assert msg.topic == topic
            seen[f"{group}:{msg.data.decode()}"] += 1
            per_replica[replica] += 1

        return handler

    await broker.subscribe(topic, a, recorder(a, 1))
    await broker.subscribe(topic, a, recorder(a, 2))
    await broker.subscribe(topic, b, recorder(b))
    for i in range(30):
        await broker.publish(topic, str(i).encode(), {})
    await wait_for(lambda: len(seen) == 60, "every message in both groups")
    assert set(seen.values()) == {1}
    assert per_replica[1] and per_replica[2], "replicas in one process share the group's client"


async def test_failed_message_is_retried_and_acked_only_after_success(sessions: Sessions) -> None:
    broker = await sessions.broker()
    topic, group = sessions.topic("retry"), sessions.group("app")
    attempts: list[int] = []

    async def flaky(msg: BrokerMessage) -> None:
        attempts.append(msg.delivery_count)
        if len(attempts) < 3:
            raise NotProcessed("not yet")

    await broker.subscribe(topic, group, flaky)
    await broker.publish(topic, b"x", {})
    await wait_for(lambda: len(attempts) == 3, "two failures and a success")
    assert attempts == [1, 2, 3]


async def test_session_keeps_messages_while_the_app_is_away(sessions: Sessions) -> None:
    """Clean session off: published while unsubscribed (sidecar stopped), delivered on return, for
    every topic of the app, although the broker sends them before the second subscription is made."""
    broker = await sessions.broker()
    first, second, group = sessions.topic("away"), sessions.topic("away"), sessions.group("app")
    got: list[bytes] = []

    async def handler(msg: BrokerMessage) -> None:
        got.append(msg.data)

    for topic in (first, second):
        await broker.subscribe(topic, group, handler)
    for topic in (first, second):
        await broker.unsubscribe(topic, group, handler)  # the last one disconnects; the session stays
    for i in range(5):
        await broker.publish(first if i % 2 else second, f"m{i}".encode(), {})
    for topic in (first, second):
        await broker.subscribe(topic, group, handler)
    await wait_for(lambda: len(got) == 5, "messages queued for the session")
    assert sorted(got) == [f"m{i}".encode() for i in range(5)]


async def test_unacked_message_comes_back_when_the_session_reconnects(sessions: Sessions) -> None:
    broker = await sessions.broker()
    topic, group = sessions.topic("inflight"), sessions.group("app")
    entered = asyncio.Event()
    got: list[BrokerMessage] = []

    async def stuck(msg: BrokerMessage) -> None:
        entered.set()
        await asyncio.Event().wait()

    async def ok(msg: BrokerMessage) -> None:
        got.append(msg)

    await broker.subscribe(topic, group, stuck)
    await broker.publish(topic, b"in-flight", {})
    await asyncio.wait_for(entered.wait(), 10)
    await broker.unsubscribe(topic, group, stuck)
    await broker.subscribe(topic, group, ok)
    await wait_for(lambda: [m.data for m in got] == [b"in-flight"], "the unacked message again")
    assert got[0].delivery_count == 2, "the broker marks it DUP"


async def test_wildcards_and_retain(sessions: Sessions) -> None:
    broker = await sessions.broker()
    base = sessions.topic("wild")
    group = sessions.group("app")
    got: list[tuple[str, str]] = []

    async def handler(msg: BrokerMessage) -> None:
        got.append((msg.topic, msg.metadata["retained"]))

    sessions.retained.add(f"{base}/kept")
    await broker.publish(f"{base}/kept", b"last", {"retain": "true"})
    await broker.subscribe(f"{base}/+", group, handler)
    await broker.publish(f"{base}/a", b"1", {})
    await broker.publish(f"{base}/a/deeper", b"2", {})  # "+" is one level only
    await wait_for(lambda: len(got) == 2, "retained and live messages")
    assert sorted(got) == [(f"{base}/a", "false"), (f"{base}/kept", "true")]
    with pytest.raises(ValueError, match="mqtt invalid retain"):
        await broker.publish(base, b"x", {"retain": "maybe"})


async def test_unreachable_broker_and_bad_metadata(tmp_path: Path) -> None:
    write(tmp_path, "p.yaml", component("pubsub", "pubsub.mqtt3", {"url": "tcp://127.0.0.1:1"}))
    with pytest.raises(ComponentError, match=r"cannot connect to the MQTT broker at 127\.0\.0\.1:1"):
        await Sidecar(SidecarOptions(app_id="x", resources_paths=[tmp_path], registry_dir=tmp_path)).start()
    for metadata, message in (({}, "missing url"), ({"url": "tcp://h", "qos": "3"}, "invalid qos 3")):
        spec = ComponentSpec("p", "pubsub.mqtt3", "v1", [], [], None, Path("p.yaml"), metadata=metadata)
        with pytest.raises(ComponentError, match=message):
            MQTTBroker.from_spec(spec)


# ---------------------------------------------------------------------- through sidecars, with the SDK


@pytest.fixture
def resources(tmp_path: Path, mqtt_url: str) -> Path:
    write(tmp_path / "res", "pubsub.yaml", component("pubsub", "pubsub.mqtt3", {"url": mqtt_url, "qos": "1"}))
    return tmp_path / "res"


@pytest.fixture
def sdk_sessions(mqtt_url: str) -> Iterator[Sessions]:
    found = Sessions(mqtt_url)
    yield found
    found.clear()


def received(port: int, topic: str) -> list[dict]:
    return httpx.get(f"http://127.0.0.1:{port}/received/{topic}", timeout=5).json()


def test_sdk_and_a_gateway_publishing_straight_to_the_broker(
    tmp_path: Path, resources: Path, sdk_sessions: Sessions, mqtt_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub_id, prefix = unique("sub"), unique("mqtt") + "-"
    sdk_sessions.client_ids.add(sub_id)
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
        event = wait_until(lambda: received(port, "orders"), timeout=15, what="order delivered")[0]
        assert event["data"] == {"order": 7} and event["source"] == publisher.options.app_id
        flaky = wait_until(lambda: len(received(port, "flaky")) >= 4 and received(port, "flaky"), timeout=30)
        assert sorted(e["data"]["n"] for e in flaky) == [0, 1, 2, 3], "RETRY and 500 retried until success"
        # A plant-floor gateway: no Dapr, a CloudEvent straight onto the MQTT topic.
        gateway = raw_client(mqtt_url)
        cloudevent = {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "gateway-7",
            "type": "com.vigil.readings",
            "datacontenttype": "application/json",
            "data": {"order": 8},
        }
        gateway.publish(prefix + "orders", json.dumps(cloudevent), qos=1).wait_for_publish(5)
        gateway.disconnect()
        gateway.loop_stop()
        events = wait_until(
            lambda: len(received(port, "orders")) >= 2 and received(port, "orders"), timeout=15
        )
        assert events[1]["data"] == {"order": 8} and events[1]["source"] == "gateway-7"
    finally:
        app.stop()
        subscriber.stop()
        publisher.stop()


def test_subscriber_sidecar_killed_mid_stream_loses_nothing(
    tmp_path: Path, resources: Path, sdk_sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Messages the app held when its sidecar died were never acked: the session gets them again."""
    sub_id = unique("sub")
    sdk_sessions.client_ids.add(sub_id)
    assert_subscriber_crash_loses_nothing(tmp_path, resources, sub_id, unique("crash") + "-", monkeypatch)
