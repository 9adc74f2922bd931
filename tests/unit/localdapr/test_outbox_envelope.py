"""The transactional outbox's pieces: settings, the CloudEvent daprd builds, Go's %v, and the relay."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from localdapr import outbox
from localdapr.components.spec import ComponentSpec
from localdapr.errors import DaprError
from localdapr.outbox import (
    Outbox,
    OutboxSettings,
    go_value_text,
    intent_event,
    published_payload,
)
from localdapr.pubsub.base import BrokerMessage
from localdapr.pubsub.memory import InMemoryBroker
from localdapr.runtime import LoadedPubSub, LoadedStore, _state_call
from localdapr.state.base import StateItem, TransactionOp
from localdapr.state.memory import InMemoryStateStore


def spec(name: str, ctype: str, metadata: dict[str, str]) -> ComponentSpec:
    return ComponentSpec(
        name=name,
        type=ctype,
        version="v1",
        entries=[],
        scopes=[],
        secret_store=None,
        file=Path(f"{name}.yaml"),
        metadata=metadata,
    )


# ---------------------------------------------------------------------- settings
def test_outbox_needs_both_publish_fields() -> None:
    assert OutboxSettings.of(spec("s", "state.in-memory", {}), "app") is None
    assert OutboxSettings.of(spec("s", "state.in-memory", {"outboxPublishPubsub": "ps"}), "app") is None
    assert OutboxSettings.of(spec("s", "state.in-memory", {"outboxPublishTopic": "t"}), "app") is None


def test_outbox_settings_defaults_and_overrides() -> None:
    plain = OutboxSettings.of(
        spec("s", "state.in-memory", {"outboxPublishPubsub": "ps", "outboxPublishTopic": "orders"}), "app"
    )
    assert plain is not None
    assert plain.outbox_pubsub == "ps"  # the internal pubsub defaults to the publish one
    assert plain.internal_topic == "appordersoutbox"  # daprd: namespace + appID + topic + "outbox"
    assert plain.discard_when_missing_state is False
    full = OutboxSettings.of(
        spec(
            "s",
            "state.in-memory",
            {
                "outboxPublishPubsub": "ps",
                "outboxPublishTopic": "orders",
                "outboxPubsub": "internal",
                "outboxInternalTopic": "mine",
                "outboxDiscardWhenMissingState": "yes",  # dapr/kit IsTruthy
            },
        ),
        "app",
    )
    assert full is not None
    assert (full.outbox_pubsub, full.internal_topic, full.discard_when_missing_state) == (
        "internal",
        "mine",
        True,
    )


# ---------------------------------------------------------------------- Go's %v
@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "<nil>"),
        (True, "true"),
        ("2", "2"),
        (2.0, "2"),
        (-2.5, "-2.5"),
        (123456.0, "123456"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (1e21, "1e+21"),
        (-0.0, "-0"),
        ([1.0, "x", None], "[1 x <nil>]"),
        ({"b": 1.0, "a": {"z": True, "y": []}}, "map[a:map[y:[] z:true] b:1]"),
    ],
)
def test_go_value_text_is_fmt_v(value: object, text: str) -> None:
    assert go_value_text(value) == text


# ---------------------------------------------------------------------- what is published
def test_grpc_payload_is_the_request_bytes() -> None:
    item = StateItem(key="k", value=b'{"a": 1}', metadata={"contentType": "application/json"})
    assert published_payload(item, json_values=False) == (b'{"a": 1}', "application/json")


def test_http_payload_is_go_formatted() -> None:
    assert published_payload(StateItem(key="k", value=b'"2"'), json_values=True) == (b"2", "")
    obj = StateItem(key="k", value=b'{"b":2,"a":"<x>"}')
    assert published_payload(obj, json_values=True) == (b"map[a:<x> b:2]", "")
    obj.content_type = "application/json"  # the request's contentType field wins over metadata
    obj.metadata["contentType"] = "text/plain"
    assert published_payload(obj, json_values=True) == (b'{"a":"\\u003cx\\u003e","b":2}', "application/json")


def event(data: bytes, content_type: str = "", metadata: dict[str, str] | None = None) -> dict:
    return intent_event(
        marker="outbox-1",
        source="app",
        pubsub_name="ps",
        data=data,
        content_type=content_type,
        traceparent="00-aa-bb-01",
        metadata=metadata or {},
    )


def test_intent_event_is_daprds_envelope() -> None:
    ev = event(b"2")
    assert ev["data"] == "2" and ev["datacontenttype"] == "text/plain"
    assert ev["id"] == "outbox-1" and ev["source"] == "app" and ev["type"] == "com.dapr.event.sent"
    assert ev["specversion"] == "1.0" and ev["pubsubname"] == "ps" and ev["topic"] == ""
    assert ev["traceid"] == "00-aa-bb-01" and ev["traceparent"] == "" and ev["tracestate"] == ""
    assert ev["time"][:4].isdigit() and "T" in ev["time"]


def test_intent_event_data_by_content_type() -> None:
    assert event(b'{"a": 1}', "application/json; charset=utf-8")["data"] == {"a": 1}
    assert event(b"not json", "application/json")["data"] == "not json"  # contrib falls back to text
    assert event(b'{"a": 1}', "application/cloudevents+json")["data"] == '{"a": 1}'  # not JSON to contrib
    binary = event(b"\x00\x01", "application/octet-stream")
    assert "data" not in binary and base64.b64decode(binary["data_base64"]) == b"\x00\x01"


def test_metadata_becomes_attributes_except_data_and_id() -> None:
    ev = event(b"2", metadata={"outbox.cloudevent.myapp": "myapp1", "data": "a", "id": "b", "type": "T"})
    assert ev["outbox.cloudevent.myapp"] == "myapp1" and ev["type"] == "T"
    assert ev["data"] == "2" and ev["id"] == "outbox-1"


# ---------------------------------------------------------------------- transaction and relay
class Harness:
    """An Outbox over an in-memory store and broker, with a consumer on the final topic."""

    def __init__(self, discard: bool = False) -> None:
        metadata = {"outboxPublishPubsub": "ps", "outboxPublishTopic": "orders"}
        if discard:
            metadata["outboxDiscardWhenMissingState"] = "true"
        self.store = InMemoryStateStore()
        self.broker = InMemoryBroker()
        self.states = {"s": LoadedStore(spec("s", "state.in-memory", metadata), self.store, "app")}
        self.pubsubs = {"ps": LoadedPubSub(spec("ps", "pubsub.in-memory", {}), self.broker)}
        self.outbox = Outbox("app", self.states, self.pubsubs)
        self.outbox.add(self.states["s"].spec)
        self.published: list[dict] = []

    async def start(self) -> None:
        async def consume(message: BrokerMessage) -> None:
            self.published.append(json.loads(message.data))

        await self.broker.subscribe("orders", "consumer", consume)
        await self.outbox.start()

    async def commit(self, ops: list[TransactionOp]) -> None:
        await _state_call(self.states["s"], "transaction", self.store.transact(ops))  # as the runtime does

    async def stop(self) -> None:
        await self.outbox.stop()
        await self.broker.close()


async def wait_for(condition: Callable[[], Any], timeout: float = 5.0) -> None:
    """Poll `condition` (sync or async) until it is truthy; TimeoutError after `timeout` seconds."""
    async with asyncio.timeout(timeout):
        while True:
            result = condition()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.01)


async def test_commit_publishes_projection_and_removes_marker() -> None:
    h = Harness()
    await h.start()
    try:
        ops = [
            TransactionOp("upsert", StateItem(key="app||k", value=b"saved", metadata={"m": "1"})),
            TransactionOp(
                "upsert", StateItem(key="app||k", value=b"shown", metadata={"outbox.projection": "true"})
            ),
            TransactionOp("delete", StateItem(key="app||gone")),
        ]
        await h.outbox.transact("s", ops, False, h.commit)
        await wait_for(lambda: h.published)
        (ev,) = h.published
        assert ev["data"] == "shown" and ev["m"] == "1" and "outbox.projection" not in ev
        assert ev["topic"] == "orders" and ev["pubsubname"] == "ps"
        assert (await h.store.get("app||k")).data == b"saved"  # type: ignore[union-attr]
        # The marker is deleted once the event is published.
        await wait_for(lambda: _no_markers(h))
    finally:
        await h.stop()


async def test_refused_transaction_publishes_nothing() -> None:
    h = Harness()
    await h.start()
    try:
        bad = [TransactionOp("upsert", StateItem(key="app||k", value=b"x", etag="42"))]
        with pytest.raises(DaprError):
            await h.outbox.transact("s", bad, False, h.commit)
        # The intent was published before the store refused: the relay drops it without daprd's wait.
        await wait_for(lambda: h.broker.pending("appordersoutbox", "app") == 0, timeout=0.5)
        assert h.published == [] and await _no_markers(h)
    finally:
        await h.stop()


@pytest.mark.parametrize("discard", [True, False])
async def test_missing_marker_of_an_unknown_transaction(
    discard: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An intent this sidecar did not publish (a restart, another replica) whose marker is missing."""
    caplog.set_level(logging.ERROR, "localdapr.outbox")
    monkeypatch.setattr(outbox, "STATE_SCAN_DELAY", 0.01)
    monkeypatch.setattr(outbox, "RETRY_INITIAL", 0.01)
    monkeypatch.setattr(outbox, "RETRY_MAX_ELAPSED", 0.1)
    h = Harness(discard=discard)
    await h.start()
    try:
        intent = event(b"2")
        await h.broker.publish("appordersoutbox", json.dumps(intent).encode(), {})
        verdict = "discarding message" if discard else "rejecting for later processing"
        await wait_for(lambda: any(verdict in r.getMessage() for r in caplog.records))
        await wait_for(lambda: h.broker.pending("appordersoutbox", "app") == (0 if discard else 1))
        assert h.published == []
        # Once the marker exists (a slow commit), the intent is published.
        await h.store.set(StateItem(key="outbox-1", value=b'"0"'))
        if not discard:
            await wait_for(lambda: h.published, timeout=10)
            assert h.published[0]["data"] == "2"
    finally:
        await h.stop()


async def _no_markers(h: Harness) -> bool:
    return await h.store.keys_with_prefix("outbox-") == []
