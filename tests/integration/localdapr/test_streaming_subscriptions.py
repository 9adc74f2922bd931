"""Streaming subscriptions (`SubscribeTopicEventsAlpha1`) through localdapr, with the official SDK.

A sidecar without an app: the test process subscribes with `DaprClient.subscribe(...)` (iterating and
answering with `respond_success/retry/drop`), `subscribe_with_handler(...)` or the aio client, and
publishes through the same sidecar. Every test runs against pubsub.in-memory and pubsub.redis (real
Redis Streams, where "acked" means nothing is left pending for the app's consumer group). The
errors and the stream's end are checked with the raw gRPC stub, where the SDK would hide them.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from dapr.aio.clients import DaprClient as AioDaprClient
from dapr.clients import DaprClient
from dapr.clients.grpc._response import TopicEventResponse
from dapr.clients.grpc.subscription import Subscription
from dapr.common.pubsub.subscription import SubscriptionMessage
from dapr.proto import api_v1
from dapr.proto.runtime.v1 import dapr_pb2_grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from redis import Redis

from localdapr.pubsub.memory import InMemoryBroker
from localdapr.redisconn import parse_redis_host
from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port, wait_until
from tests.integration.localdapr.components import component, unique, write

pytestmark = pytest.mark.sidecar

REPO = Path(__file__).resolve().parents[3]
ECHO_APP = "tests.integration.localdapr.sidecar_apps.echo_app:app"

RESILIENCY = """apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: streams
spec:
  policies:
    retries:
      twice:
        policy: constant
        duration: 50ms
        maxRetries: 2
  targets:
    components:
      pubsub:
        inbound:
          retry: twice
"""

# A client process that subscribes, writes the first message it gets to a file and never answers:
# killed with SIGKILL, it is a stream that disappears with a message in flight.
DYING_CLIENT = """
import json, sys, time
from dapr.clients import DaprClient
address, topic, out = sys.argv[1:4]
with DaprClient(address=address) as client:
    subscription = client.subscribe("pubsub", topic)
    message = next(subscription)
    with open(out, "w") as f:
        json.dump({"id": message.id(), "data": message.data()}, f)
    time.sleep(600)
"""


@dataclass
class Setup:
    sidecar: SidecarThread
    broker: str
    redis: Redis | None
    topics: list[str]

    @property
    def app_id(self) -> str:
        return self.sidecar.options.app_id

    def topic(self, name: str) -> str:
        topic = unique(name)
        self.topics.append(topic)
        return topic

    def client(self) -> DaprClient:
        return DaprClient(address=self.sidecar.grpc_address)

    def publish(self, client: DaprClient, topic: str, *payloads: dict[str, Any]) -> None:
        for payload in payloads:
            client.publish_event("pubsub", topic, json.dumps(payload), data_content_type="application/json")

    def pending(self, topic: str) -> int:
        """Messages of `topic` the app's consumer group has not acked."""
        if self.redis is not None:
            return int(self.redis.xpending(topic, self.app_id)["pending"])
        assert self.sidecar.sidecar is not None
        broker = self.sidecar.sidecar.runtime.pubsubs["pubsub"].broker
        assert isinstance(broker, InMemoryBroker)
        return broker.pending(topic, self.app_id)

    def streams(self) -> int:
        assert self.sidecar.sidecar is not None
        return len(self.sidecar.sidecar.streams.active)

    def http_subscriptions(self) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{self.sidecar.http_port}/v1.0/metadata"
        return list(httpx.get(url, timeout=5).json()["subscriptions"])

    def grpc_subscriptions(self) -> list[Any]:
        with grpc.insecure_channel(self.sidecar.grpc_address) as channel:
            metadata = dapr_pb2_grpc.DaprStub(channel).GetMetadata(api_v1.GetMetadataRequest(), timeout=5)
        return list(metadata.subscriptions)


def pubsub_component(broker: str, redis: str | None) -> str:
    if broker == "in-memory":
        return component("pubsub", "pubsub.in-memory", {})
    assert redis
    # A message left unacked comes back after a second (reclaimed every half second).
    return component(
        "pubsub",
        "pubsub.redis",
        {"redisHost": redis, "processingTimeout": "1s", "redeliverInterval": "500ms"},
    )


def start_setup(
    tmp_path: Path, broker: str, redis_url: str | None, files: dict[str, str] | None = None, app_port: int = 0
) -> Setup:
    res = tmp_path / "res"
    write(res, "pubsub.yaml", pubsub_component(broker, redis_url))
    for name, text in (files or {}).items():
        write(res, name, text)
    redis = None
    if redis_url is not None:
        host, port = parse_redis_host(redis_url)
        redis = Redis(host=host, port=port)
    options = SidecarOptions(
        app_id=unique("streamer"),
        resources_paths=[res],
        registry_dir=tmp_path / "reg",
        app_port=app_port or None,
    )
    return Setup(SidecarThread(options).start(), broker, redis, [])


def stop_setup(setup: Setup) -> None:
    setup.sidecar.stop()
    if setup.redis is not None:
        if setup.topics:
            setup.redis.delete(*setup.topics)
        setup.redis.close()


def _setup(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str]
) -> Iterator[Setup]:
    redis_url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    s = start_setup(tmp_path, str(request.param), redis_url, files)
    monkeypatch.setenv("DAPR_HTTP_PORT", str(s.sidecar.http_port))  # the SDK waits on its health
    try:
        yield s
    finally:
        stop_setup(s)


@pytest.fixture(params=["in-memory", "redis"])
def setup(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Setup]:
    yield from _setup(request, tmp_path, monkeypatch, {})


@pytest.fixture(params=["in-memory", "redis"])
def resilient(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Setup]:
    """A sidecar whose pubsub has a `components.pubsub.inbound` retry policy (two retries)."""
    yield from _setup(request, tmp_path, monkeypatch, {"resiliency.yaml": RESILIENCY})


class Receiver:
    """Reads an SDK subscription with a deadline (iterating it blocks until a message comes)."""

    def __init__(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self._reader = ThreadPoolExecutor(max_workers=1)

    def next(self, timeout: float = 15.0) -> SubscriptionMessage:
        return self._reader.submit(next, self.subscription).result(timeout)

    def close(self) -> None:
        self.subscription.close()  # also ends a read still waiting in the reader thread
        self._reader.shutdown(wait=True)


def wait_acked(setup: Setup, topic: str, what: str) -> None:
    wait_until(lambda: setup.pending(topic) == 0, timeout=15, what=what)


# ------------------------------------------------------------------------------------ delivery
def test_iterate_and_respond_success(setup: Setup) -> None:
    topic = setup.topic("orders")
    with setup.client() as client:
        receiver = Receiver(client.subscribe("pubsub", topic))
        try:
            setup.publish(client, topic, *({"n": n} for n in range(3)))
            messages = []
            for _ in range(3):  # pubsub.in-memory sends the next message once this one is answered
                messages.append(receiver.next())
                receiver.subscription.respond_success(messages[-1])
            assert sorted(m.data()["n"] for m in messages) == [0, 1, 2]
            first = messages[0]
            assert first.topic() == topic
            assert first.pubsub_name() == "pubsub"
            assert first.data_content_type() == "application/json"
            assert first.type() == "com.dapr.event.sent"
            assert first.source() == setup.app_id
            assert first.id()
            wait_acked(setup, topic, "every message acked after SUCCESS")
        finally:
            receiver.close()


def test_retry_is_redelivered_until_success(setup: Setup) -> None:
    topic = setup.topic("flaky")
    with setup.client() as client:
        receiver = Receiver(client.subscribe("pubsub", topic))
        try:
            setup.publish(client, topic, {"n": 1})
            first = receiver.next()
            receiver.subscription.respond_retry(first)
            again = receiver.next()  # handed back to the broker, which delivers it again
            assert (again.id(), again.data()) == (first.id(), {"n": 1})
            receiver.subscription.respond_success(again)
            wait_acked(setup, topic, "the retried message acked")
        finally:
            receiver.close()


def test_retry_under_resiliency_then_dead_letter(resilient: Setup) -> None:
    """Under a retry policy the sidecar retries RETRY twice, then dead-letters."""
    setup = resilient
    topic, dead = setup.topic("poison"), setup.topic("poison-dead")
    with setup.client() as client:
        receiver = Receiver(client.subscribe("pubsub", topic, dead_letter_topic=dead))
        dead_receiver = Receiver(client.subscribe("pubsub", dead))
        try:
            setup.publish(client, topic, {"bad": True})
            attempts = []
            for _ in range(3):  # the first delivery and two retries
                attempts.append(receiver.next())
                receiver.subscription.respond_retry(attempts[-1])
            assert len({m.id() for m in attempts}) == 1
            dead_letter = dead_receiver.next()
            dead_receiver.subscription.respond_success(dead_letter)
            assert dead_letter.data() == {"bad": True}
            assert dead_letter.topic() == dead
            wait_acked(setup, topic, "the dead-lettered message acked on its topic")
            wait_acked(setup, dead, "the dead letter acked")
        finally:
            receiver.close()
            dead_receiver.close()


def test_drop_goes_to_the_dead_letter_topic(setup: Setup) -> None:
    topic, dead = setup.topic("drop"), setup.topic("drop-dead")
    with setup.client() as client:
        receiver = Receiver(client.subscribe("pubsub", topic, dead_letter_topic=dead))
        dead_receiver = Receiver(client.subscribe("pubsub", dead))
        try:
            setup.publish(client, topic, {"poison": 1})
            dropped = receiver.next()
            receiver.subscription.respond_drop(dropped)
            dead_letter = dead_receiver.next()
            dead_receiver.subscription.respond_success(dead_letter)
            assert (dead_letter.id(), dead_letter.data(), dead_letter.topic()) == (
                dropped.id(),
                {"poison": 1},
                dead,
            )
            wait_acked(setup, topic, "the dropped message is not redelivered")
            setup.publish(client, topic, {"next": 2})
            assert receiver.next().data() == {"next": 2}, "DROP is not retried: the next message follows"
        finally:
            receiver.close()
            dead_receiver.close()


def test_subscribe_with_handler(setup: Setup) -> None:
    topic = setup.topic("handled")
    seen: list[tuple[str, Any]] = []
    lock = threading.Lock()

    def handler(message: SubscriptionMessage) -> TopicEventResponse:
        with lock:
            first_time = all(i != message.id() for i, _ in seen)
            seen.append((message.id(), message.data()))
        return TopicEventResponse("retry" if first_time else "success")

    with setup.client() as client:
        close = client.subscribe_with_handler("pubsub", topic, handler)
        try:
            setup.publish(client, topic, {"n": 1}, {"n": 2})
            wait_until(lambda: len(seen) >= 4, timeout=20, what="each message retried once, then acked")
            wait_acked(setup, topic, "both messages acked")
        finally:
            close()
    assert Counter(json.dumps(data) for _, data in seen) == {'{"n": 1}': 2, '{"n": 2}': 2}


def test_aio_client_subscribe(setup: Setup) -> None:
    topic = setup.topic("aio")

    async def run() -> list[Any]:
        async with AioDaprClient(address=setup.sidecar.grpc_address) as client:
            subscription = await client.subscribe("pubsub", topic)
            try:
                await client.publish_event(
                    "pubsub", topic, json.dumps({"aio": True}), data_content_type="application/json"
                )
                first = await asyncio.wait_for(subscription.next_message(), 15)
                await subscription.respond_retry(first)
                again = await asyncio.wait_for(subscription.next_message(), 15)
                await subscription.respond_success(again)
                # Closing at once could cancel the stream before the answer is sent (as with daprd).
                await asyncio.to_thread(wait_acked, setup, topic, "acked through the aio client")
                return [first.id() == again.id(), again.data()]
            finally:
                await subscription.close()

    assert asyncio.run(run()) == [True, {"aio": True}]


def test_disconnected_stream_hands_unacked_messages_back(setup: Setup, tmp_path: Path) -> None:
    """A client killed with a message in flight: a new stream gets that message and the rest."""
    topic, out = setup.topic("dying"), tmp_path / "got.json"
    dying = subprocess.Popen(
        [sys.executable, "-c", DYING_CLIENT, setup.sidecar.grpc_address, topic, str(out)],
        env={**os.environ, "DAPR_HTTP_PORT": str(setup.sidecar.http_port)},
        cwd=REPO,
    )
    try:
        wait_until(lambda: setup.streams() == 1, timeout=30, what="the client's stream subscribed")
        with setup.client() as client:
            setup.publish(client, topic, *({"n": n} for n in range(3)))
            wait_until(lambda: out.exists() and out.read_text(), timeout=15, what="the client got a message")
            in_flight = json.loads(out.read_text())
            dying.send_signal(signal.SIGKILL)
            dying.wait(10)
            wait_until(lambda: setup.streams() == 0, timeout=15, what="the sidecar saw the stream go")
            assert setup.pending(topic) == 3, "nothing was acked"
            receiver = Receiver(client.subscribe("pubsub", topic))
            try:
                messages = []
                for _ in range(3):
                    messages.append(receiver.next())
                    receiver.subscription.respond_success(messages[-1])
                wait_acked(setup, topic, "everything acked by the second stream")
            finally:
                receiver.close()
        assert sorted(m.data()["n"] for m in messages) == [0, 1, 2]
        assert in_flight["id"] in {m.id() for m in messages}
    finally:
        if dying.poll() is None:
            dying.kill()
            dying.wait(10)


def test_streams_on_one_topic_share_the_consumer_group(setup: Setup) -> None:
    """Two streams on one topic are allowed (daprd >= 1.16) and compete: each message reaches one."""
    topic = setup.topic("shared")
    got: queue.Queue[SubscriptionMessage] = queue.Queue()

    def handler(message: SubscriptionMessage) -> TopicEventResponse:
        got.put(message)
        return TopicEventResponse("success")

    with setup.client() as client:
        closers = [client.subscribe_with_handler("pubsub", topic, handler) for _ in range(2)]
        try:
            wait_until(lambda: setup.streams() == 2, timeout=10, what="both streams subscribed")
            setup.publish(client, topic, *({"n": n} for n in range(6)))
            wait_acked(setup, topic, "every message acked")
        finally:
            for close in closers:
                close()
    ns = [got.get_nowait().data()["n"] for _ in range(got.qsize())]
    assert sorted(ns) == list(range(6)), "each message delivered once to one of the streams"


# ------------------------------------------------------------------------------------ metadata
def test_metadata_lists_streams_as_streaming(setup: Setup) -> None:
    orders, audit = setup.topic("orders"), setup.topic("audit")
    with setup.client() as client:
        first = client.subscribe("pubsub", orders, metadata={"note": "x"}, dead_letter_topic=orders + "-dead")
        second = client.subscribe("pubsub", audit)
        try:
            http = sorted(setup.http_subscriptions(), key=lambda s: s["topic"])
            assert http == sorted(
                [
                    {
                        "pubsubname": "pubsub",
                        "topic": orders,
                        "metadata": {"note": "x"},
                        "rules": [{"path": "/"}],
                        "deadLetterTopic": orders + "-dead",
                        "type": "STREAMING",
                    },
                    {
                        "pubsubname": "pubsub",
                        "topic": audit,
                        "metadata": {},
                        "rules": [{"path": "/"}],
                        "type": "STREAMING",
                    },
                ],
                key=lambda s: s["topic"],
            )
            listed = {s.topic: s for s in setup.grpc_subscriptions()}
            assert set(listed) == {orders, audit}
            assert listed[orders].type == api_v1.PubsubSubscriptionType.STREAMING
            assert listed[orders].dead_letter_topic == orders + "-dead"
            assert dict(listed[orders].metadata) == {"note": "x"}
            assert [(r.match, r.path) for r in listed[orders].rules.rules] == [("", "/")]
            first.close()
            wait_until(
                lambda: [s["topic"] for s in setup.http_subscriptions()] == [audit],
                timeout=10,
                what="a closed stream leaves the list",
            )
        finally:
            first.close()
            second.close()


def test_streams_and_app_subscriptions_coexist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An app's own subscriptions (PROGRAMMATIC) and a stream on the same sidecar each get their topic."""
    app_port = free_port()
    s = start_setup(tmp_path, "in-memory", None, app_port=app_port)
    prefix = unique("t") + "-"
    app = AppProcess(ECHO_APP, app_port, s.sidecar.options.app_env(), {"TOPIC_PREFIX": prefix}, cwd=REPO)
    monkeypatch.setenv("DAPR_HTTP_PORT", str(s.sidecar.http_port))
    try:
        app.start()
        s.sidecar.wait_app_ready()
        with s.client() as client:
            receiver = Receiver(client.subscribe("pubsub", prefix + "streamed"))
            try:
                s.publish(client, prefix + "orders", {"to": "app"})
                s.publish(client, prefix + "streamed", {"to": "stream"})
                message = receiver.next()
                receiver.subscription.respond_success(message)
                assert message.data() == {"to": "stream"}
                got = wait_until(
                    lambda: httpx.get(f"http://127.0.0.1:{app_port}/received/orders", timeout=5).json(),
                    timeout=15,
                    what="the app got its message",
                )
                assert got[0]["data"] == {"to": "app"}
                types = {sub["topic"]: sub["type"] for sub in s.http_subscriptions()}
                assert types[prefix + "streamed"] == "STREAMING"
                assert types[prefix + "orders"] == "PROGRAMMATIC"
            finally:
                receiver.close()
    finally:
        app.stop()
        stop_setup(s)


# ------------------------------------------------------------------------------------ errors, end
class RawStream:
    """SubscribeTopicEventsAlpha1 on the raw stub: requests are sent when put, responses read in order."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self._requests: queue.Queue[Any] = queue.Queue()
        self.responses = dapr_pb2_grpc.DaprStub(self.channel).SubscribeTopicEventsAlpha1(
            iter(self._requests.get, None), timeout=20
        )

    def send_initial(self, pubsub: str, topic: str) -> None:
        initial = api_v1.SubscribeTopicEventsRequestInitialAlpha1(pubsub_name=pubsub, topic=topic)
        self._requests.put(api_v1.SubscribeTopicEventsRequestAlpha1(initial_request=initial))

    def send(self, request: Any) -> None:
        self._requests.put(request)

    def error(self) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as raised:
            for _ in self.responses:
                pass
        return raised.value

    def close(self) -> None:
        self._requests.put(None)
        self.responses.cancel()
        self.channel.close()


@pytest.mark.parametrize("setup", ["in-memory"], indirect=True)
@pytest.mark.parametrize(
    ("pubsub", "topic", "message"),
    [("", "t", "pubsubName is required"), ("pubsub", "", "topic is required")],
)
def test_initial_request_without_pubsub_or_topic(setup: Setup, pubsub: str, topic: str, message: str) -> None:
    stream = RawStream(setup.sidecar.grpc_address)
    try:
        stream.send_initial(pubsub, topic)
        error = stream.error()
        assert (error.code(), error.details()) == (grpc.StatusCode.UNKNOWN, message)
    finally:
        stream.close()


@pytest.mark.parametrize("setup", ["in-memory"], indirect=True)
def test_first_message_must_be_the_initial_request_and_only_once(setup: Setup) -> None:
    not_initial = RawStream(setup.sidecar.grpc_address)
    twice = RawStream(setup.sidecar.grpc_address)
    try:
        processed = api_v1.SubscribeTopicEventsRequestProcessedAlpha1(id="x")
        not_initial.send(api_v1.SubscribeTopicEventsRequestAlpha1(event_processed=processed))
        error = not_initial.error()
        assert (error.code(), error.details()) == (grpc.StatusCode.UNKNOWN, "initial request is required")

        twice.send_initial("pubsub", setup.topic("twice"))
        assert next(twice.responses).WhichOneof("subscribe_topic_events_response_type") == "initial_response"
        twice.send_initial("pubsub", setup.topic("again"))
        error = twice.error()
        assert (error.code(), error.details()) == (
            grpc.StatusCode.UNKNOWN,
            "duplicate initial request received",
        )
        wait_until(lambda: setup.streams() == 0, timeout=10, what="the refused stream unsubscribed")
    finally:
        not_initial.close()
        twice.close()


@pytest.mark.parametrize("setup", ["in-memory"], indirect=True)
def test_unknown_pubsub_has_daprds_rich_error(setup: Setup) -> None:
    stream = RawStream(setup.sidecar.grpc_address)
    try:
        stream.send_initial("nope", "t")
        error = stream.error()
    finally:
        stream.close()
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "pubsub nope is not found")
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None and len(status.details) == 1
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == ("DAPR_PUBSUB_NOT_FOUND", "dapr.io", {})

    with (
        setup.client() as client,
        pytest.raises(Exception, match="Error while initializing stream") as raised,
    ):
        client.subscribe("nope", "t")  # the SDK wraps the status; the cause is the gRPC error
    cause = raised.value.__cause__
    assert isinstance(cause, grpc.RpcError) and cause.code() is grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("setup", ["in-memory"], indirect=True)
def test_stopping_the_sidecar_ends_streams_without_an_error(setup: Setup) -> None:
    stream = RawStream(setup.sidecar.grpc_address)
    try:
        stream.send_initial("pubsub", setup.topic("end"))
        assert next(stream.responses).WhichOneof("subscribe_topic_events_response_type") == "initial_response"
        stopper = threading.Thread(target=setup.sidecar.stop)
        stopper.start()
        assert list(stream.responses) == []  # the stream ends with OK, which the SDK answers by reconnecting
        stopper.join(15)
        assert not stopper.is_alive()
    finally:
        stream.close()
