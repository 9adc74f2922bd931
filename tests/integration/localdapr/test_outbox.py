"""The transactional outbox through localdapr: the SDK runs state transactions on a store with outbox
metadata, and a FastAPI app (DaprApp subscriptions, echo_app) receives what the outbox publishes.

Runs on every state store (in-memory, SQLite, real Redis) and both brokers (in-memory, Redis Streams).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from redis import Redis

from localdapr.pubsub.memory import InMemoryBroker
from localdapr.redisconn import parse_redis_host
from localdapr.sidecar import SidecarOptions
from localdapr.state.base import StateItem
from localdapr.testing import AppProcess, SidecarProcess, SidecarThread, free_port, wait_until
from tests.integration.localdapr.components import component, state_component, unique, write

pytestmark = pytest.mark.sidecar

APP = "tests.integration.localdapr.sidecar_apps.echo_app:app"
REPO = Path(__file__).resolve().parents[3]
# (state store, broker): every store and both brokers, Redis for both in the Redis variant.
PROFILES = [("in-memory", "in-memory"), ("sqlite", "in-memory"), ("redis", "redis")]


def broker_component(name: str, broker: str, redis: str | None) -> str:
    if broker == "in-memory":
        return component(name, "pubsub.in-memory", {})
    assert redis
    return component(
        name, "pubsub.redis", {"redisHost": redis, "processingTimeout": "15s", "redeliverInterval": "1s"}
    )


@dataclass
class Outboxed:
    """A sidecar whose `statestore` publishes through its outbox, and the subscriber app behind it."""

    sidecar: SidecarThread
    app: AppProcess
    topic: str  # outboxPublishTopic, which the app subscribes to ("orders" with the app's prefix)
    redis: Redis | None

    @property
    def app_id(self) -> str:
        return self.sidecar.options.app_id

    @property
    def internal_topic(self) -> str:
        return f"{self.app_id}{self.topic}outbox"  # daprd's name for it

    def received(self) -> list[dict[str, Any]]:
        return httpx.get(f"http://127.0.0.1:{self.app.port}/received/orders", timeout=5).json()

    def call(self, coro: Any) -> Any:
        return self.sidecar.call(coro)

    def marker_left(self, event: dict[str, Any]) -> bool:
        """The outbox marker of a published event is still in the store (it is the event's id)."""
        store = self.sidecar.sidecar.runtime.states["statestore"].store  # type: ignore[union-attr]
        return self.call(store.get(event["id"])) is not None

    def internal_drained(self) -> bool:
        """Every intent on the internal topic has been handled (acked) by the relay."""
        if self.redis is None:
            broker = self.sidecar.sidecar.runtime.pubsubs["pubsub"].broker  # type: ignore[union-attr]
            assert isinstance(broker, InMemoryBroker)
            return broker.pending(self.internal_topic, self.app_id) == 0
        last = self.redis.xinfo_stream(self.internal_topic)["last-generated-id"]
        (group,) = self.redis.xinfo_groups(self.internal_topic)
        return group["pending"] == 0 and group["last-delivered-id"] == last


def start(
    tmp_path: Path, store: str, broker: str, redis: str | None, state_metadata: dict[str, str] | None = None
) -> Outboxed:
    res = tmp_path / "res"
    app_id, prefix = unique("shop"), unique("t") + "-"
    topic = prefix + "orders"
    outbox = {"outboxPublishPubsub": "pubsub", "outboxPublishTopic": topic, **(state_metadata or {})}
    write(res, "state.yaml", state_component(store, tmp_path, redis=redis, extra=outbox))
    write(res, "pubsub.yaml", broker_component("pubsub", broker, redis))
    app_port = free_port()
    sidecar = SidecarThread(
        SidecarOptions(app_id=app_id, resources_paths=[res], app_port=app_port, registry_dir=tmp_path / "reg")
    ).start()
    try:
        app = AppProcess(
            APP, app_port, sidecar.options.app_env(), {"TOPIC_PREFIX": prefix}, cwd=REPO, name=app_id
        ).start()
    except BaseException:
        sidecar.stop()
        raise
    client = redis_client(redis) if broker == "redis" and redis else None
    outboxed = Outboxed(sidecar, app, topic, client)
    try:
        sidecar.wait_app_ready()
    except BaseException:
        stop(outboxed)
        raise
    return outboxed


def redis_client(address: str) -> Redis:
    host, port = parse_redis_host(address)
    return Redis(host=host, port=port)


def stop(outboxed: Outboxed) -> None:
    try:
        outboxed.app.stop()
    finally:
        outboxed.sidecar.stop()
        if outboxed.redis is not None:
            outboxed.redis.delete(outboxed.internal_topic, outboxed.topic)
            outboxed.redis.close()


@pytest.fixture(params=PROFILES, ids=[f"{s}-state-{b}-pubsub" for s, b in PROFILES])
def outboxed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Outboxed]:
    store, broker = request.param
    redis = request.getfixturevalue("redis_url") if "redis" in (store, broker) else None
    started = start(tmp_path, store, broker, redis)
    try:
        yield started
    finally:
        stop(started)


@pytest.fixture
def client(outboxed: Outboxed, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaprClient]:
    monkeypatch.setenv("DAPR_HTTP_PORT", str(outboxed.sidecar.http_port))  # the SDK's health check
    with DaprClient(address=outboxed.sidecar.grpc_address) as c:
        yield c


def test_commit_publishes_each_upsert(outboxed: Outboxed, client: DaprClient) -> None:
    client.save_state("statestore", "old", "x")
    client.execute_state_transaction(
        "statestore",
        [
            TransactionalStateOperation(
                key="order-1",
                data=json.dumps({"qty": 3}),
                metadata={"contentType": "application/json", "outbox.cloudevent.myapp": "myapp1"},
            ),
            TransactionalStateOperation(key="old", operation_type=TransactionOperationType.delete),
        ],
    )
    client.execute_state_transaction("statestore", [TransactionalStateOperation(key="order-2", data="two")])
    wait_until(lambda: len(outboxed.received()) >= 2, timeout=30, what="both events")
    events = outboxed.received()
    by_data = {json.dumps(e["data"], sort_keys=True): e for e in events}
    assert set(by_data) == {'{"qty": 3}', '"two"'}  # the delete published nothing
    first, second = by_data['{"qty": 3}'], by_data['"two"']
    assert first["id"].startswith("outbox-") and first["id"] != second["id"]
    assert first["topic"] == outboxed.topic and first["pubsubname"] == "pubsub"
    assert first["source"] == outboxed.app_id and first["type"] == "com.dapr.event.sent"
    assert first["datacontenttype"] == "application/json" and first["specversion"] == "1.0"
    assert first["outbox.cloudevent.myapp"] == "myapp1"  # upsert metadata becomes attributes, as daprd
    assert first["traceid"].startswith("00-") and first["time"]
    assert second["datacontenttype"] == "text/plain"
    assert json.loads(client.get_state("statestore", "order-1").data) == {"qty": 3}
    assert client.get_state("statestore", "old").data == b""
    # Each marker is deleted once its event is published.
    wait_until(lambda: not any(map(outboxed.marker_left, events)), timeout=10, what="markers deleted")


def test_failed_transaction_publishes_nothing(outboxed: Outboxed, client: DaprClient) -> None:
    client.save_state("statestore", "k", "v1")
    with pytest.raises(DaprGrpcError) as info:
        client.execute_state_transaction(
            "statestore",
            [
                TransactionalStateOperation(key="other", data="never"),
                TransactionalStateOperation(key="k", data="v2", etag="999"),  # stale: the store refuses
            ],
        )
    assert info.value.code() == grpc.StatusCode.ABORTED
    assert client.get_state("statestore", "k").data == b"v1"
    assert client.get_state("statestore", "other").data == b""
    # The refused transaction's intents were on the internal topic before it ran; once the relay has
    # handled all of them and a later transaction's event has arrived, that event is the only one.
    client.execute_state_transaction("statestore", [TransactionalStateOperation(key="fence", data="fence")])
    wait_until(outboxed.internal_drained, timeout=30, what="internal topic handled")
    wait_until(outboxed.received, timeout=30, what="the fence event")
    assert [e["data"] for e in outboxed.received()] == ["fence"]


def test_projection_is_published_and_the_original_saved(outboxed: Outboxed, client: DaprClient) -> None:
    client.execute_state_transaction(
        "statestore",
        [
            TransactionalStateOperation(key="p", data="the saved value"),
            TransactionalStateOperation(
                key="p",
                data=json.dumps({"shown": True}),
                metadata={"outbox.projection": "true", "contentType": "application/json"},
            ),
        ],
    )
    (event,) = wait_until(outboxed.received, timeout=30, what="the projected event")
    assert event["data"] == {"shown": True} and event["datacontenttype"] == "application/json"
    assert "outbox.projection" not in event  # the projection's metadata is not the event's
    assert client.get_state("statestore", "p").data == b"the saved value"


def test_http_transaction_as_daprds_integration_test(tmp_path: Path) -> None:
    """daprd's own outbox tests over HTTP: value "2" with metadata, then a projection of an object."""
    outboxed = start(tmp_path, "in-memory", "in-memory", None)
    url = f"http://127.0.0.1:{outboxed.sidecar.http_port}/v1.0/state/statestore/transaction"
    try:
        resp = httpx.post(
            url,
            json={
                "operations": [
                    {
                        "operation": "upsert",
                        "request": {
                            "key": "1",
                            "value": "2",
                            "metadata": {"outbox.cloudevent.myapp": "myapp1", "data": "a", "id": "b"},
                        },
                    }
                ]
            },
            timeout=10,
        )
        assert resp.status_code == 204 and resp.content == b""
        (event,) = wait_until(outboxed.received, timeout=30, what="the event")
        assert event["data"] == "2" and event["outbox.cloudevent.myapp"] == "myapp1"
        assert event["id"].startswith("outbox-")
        order = {"orderId": "7hf8374s", "type": "book"}
        resp = httpx.post(
            url,
            json={
                "operations": [
                    {"operation": "upsert", "request": {"key": "order1", "value": order}},
                    {
                        "operation": "upsert",
                        "request": {
                            "key": "order1",
                            "value": {"orderId": "7hf8374s"},
                            "metadata": {"outbox.projection": "true"},
                            "contentType": "application/json",
                        },
                    },
                    # Without a content type daprd formats a decoded object with Go's %v.
                    {
                        "operation": "upsert",
                        "request": {"key": "order2", "value": {"b": 1, "a": [1.5, None]}},
                    },
                ]
            },
            timeout=10,
        )
        assert resp.status_code == 204
        wait_until(lambda: len(outboxed.received()) >= 3, timeout=30, what="three events")
        events = outboxed.received()
        assert {json.dumps(e["data"], sort_keys=True) for e in events[1:]} == {
            '{"orderId": "7hf8374s"}',
            '"map[a:[1.5 <nil>] b:1]"',
        }
        saved = httpx.get(f"http://127.0.0.1:{outboxed.sidecar.http_port}/v1.0/state/statestore/order1")
        assert saved.json() == order
    finally:
        stop(outboxed)


@pytest.mark.parametrize("discard", [True, False])
def test_missing_state(
    discard: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An intent whose marker is not in the store: the state was removed before the relay got to it,
    or it comes from a transaction that never committed and that this sidecar did not see end. After
    daprd's wait (1s, then backoff for 10s) it is dropped with outboxDiscardWhenMissingState, else handed
    back to the broker, and published once the marker appears."""
    caplog.set_level(logging.ERROR, "localdapr.outbox")
    outboxed = start(
        tmp_path,
        "in-memory",
        "in-memory",
        None,
        {"outboxDiscardWhenMissingState": "true" if discard else "false"},
    )
    marker = f"outbox-{unique('lost')}"
    intent = {
        "id": marker,
        "specversion": "1.0",
        "source": outboxed.app_id,
        "type": "com.dapr.event.sent",
        "datacontenttype": "text/plain",
        "data": "lost",
        "topic": "",
        "pubsubname": "pubsub",
    }
    try:
        monkeypatch.setenv("DAPR_HTTP_PORT", str(outboxed.sidecar.http_port))
        with DaprClient(address=outboxed.sidecar.grpc_address) as client:
            client.publish_event(
                "pubsub", outboxed.internal_topic, json.dumps(intent), publish_metadata={"rawPayload": "true"}
            )
        verdict = "discarding message" if discard else "rejecting for later processing"
        wait_until(
            lambda: any(verdict in r.getMessage() for r in caplog.records),
            timeout=30,
            what=verdict,
        )
        assert outboxed.received() == []
        if discard:
            wait_until(outboxed.internal_drained, timeout=10, what="the intent acked and dropped")
            return
        assert not outboxed.internal_drained()  # handed back: the broker delivers it again
        store = outboxed.sidecar.sidecar.runtime.states["statestore"].store  # type: ignore[union-attr]
        # The marker, as a late commit writes it.
        outboxed.call(store.set(StateItem(key=marker, value=b'"0"')))
        (event,) = wait_until(outboxed.received, timeout=30, what="the intent published at last")
        assert event["data"] == "lost" and event["id"] == marker and event["topic"] == outboxed.topic
    finally:
        stop(outboxed)


def test_crash_between_commit_and_publish_loses_nothing(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transaction commits, the sidecar dies before the event is published, and the restarted
    sidecar publishes it: the intent waits in the internal topic (Redis Streams) and the marker in the
    store (SQLite), as with daprd.

    To stop the first sidecar at exactly that point on any machine, its pubsub for the final publish is
    not loaded: the relay finds the marker but cannot publish, and leaves the intent pending. Then the
    sidecar is killed; the restarted one has that pubsub and the subscriber app.
    """
    app_id, prefix = unique("shop"), unique("crash") + "-"
    topic = prefix + "orders"
    database = tmp_path / "state.db"
    state = component(
        "statestore",
        "state.sqlite",
        {
            "connectionString": str(database),
            "outboxPublishPubsub": "events",
            "outboxPublishTopic": topic,
            "outboxPubsub": "internal",
        },
    )
    internal = component(
        "internal",
        "pubsub.redis",
        {"redisHost": redis_url, "processingTimeout": "2s", "redeliverInterval": "500ms"},
    )
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        write(folder, "state.yaml", state)
        write(folder, "internal.yaml", internal)
    write(second, "events.yaml", broker_component("events", "redis", redis_url))
    internal_topic = f"{app_id}{topic}outbox"
    streams = redis_client(redis_url)

    def pending() -> int:
        if not streams.exists(internal_topic):
            return 0
        return int(streams.xpending(internal_topic, app_id)["pending"])

    def markers() -> list[str]:
        with sqlite3.connect(database) as db:
            return [r[0] for r in db.execute("SELECT key FROM state WHERE key LIKE 'outbox-%'")]

    crashed = SidecarProcess(app_id, [first], registry=tmp_path / "reg").start()
    app: AppProcess | None = None
    restarted: SidecarProcess | None = None
    try:
        monkeypatch.setenv("DAPR_HTTP_PORT", str(crashed.http_port))
        with DaprClient(address=crashed.grpc_address) as client:
            client.execute_state_transaction(
                "statestore",
                [
                    TransactionalStateOperation(
                        key="order", data=json.dumps({"n": 1}), metadata={"contentType": "application/json"}
                    )
                ],
            )
        wait_until(lambda: pending() == 1, timeout=30, what="the intent pending after a failed publish")
        assert len(markers()) == 1  # committed with the state, not yet published
        crashed.kill()

        app_port = free_port()
        restarted = SidecarProcess(app_id, [second], app_port=app_port, registry=tmp_path / "reg").start()
        app = AppProcess(
            APP, app_port, restarted.app_env(), {"TOPIC_PREFIX": prefix, "TEST_PUBSUB": "events"}, cwd=REPO
        ).start()

        def received() -> list[dict[str, Any]]:
            return httpx.get(f"http://127.0.0.1:{app_port}/received/orders", timeout=5).json()

        (event,) = wait_until(received, timeout=60, what="the event published by the restarted sidecar")
        assert event["data"] == {"n": 1} and event["topic"] == topic and event["pubsubname"] == "events"
        wait_until(
            lambda: pending() == 0 and markers() == [], timeout=30, what="intent acked, marker deleted"
        )
    finally:
        if app is not None:
            app.stop()
        if restarted is not None:
            restarted.stop()
        crashed.kill()
        streams.delete(internal_topic, topic)
        streams.close()
