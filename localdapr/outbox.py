"""The transactional outbox, as daprd implements it (dapr/dapr `pkg/runtime/pubsub/outbox.go`).

A state store with `outboxPublishPubsub` and `outboxPublishTopic` metadata publishes each value that a
state transaction upserts to that topic, and only once the transaction has committed. It takes two
phases, so that a crash between the commit and the publication loses nothing:

1. Before the transaction runs, each upsert becomes an *intent*: a CloudEvent with the id
   `outbox-<uuid>`, published to the internal topic `<appID><outboxPublishTopic>outbox` (or
   `outboxInternalTopic`) on `outboxPubsub` (default: outboxPublishPubsub). The transaction then
   commits with one more upsert per intent: the *marker* key `outbox-<uuid>`, not key-prefixed. An
   intent that cannot be published fails the call (ERR_PUBLISH_OUTBOX) before anything is written.
2. The sidecar subscribes to its internal topics (consumer group: the pubsub's consumerID, else the app
   id). For each intent it reads the marker, whose presence proves that the transaction committed,
   publishes the intent to outboxPublishTopic with `topic` and `pubsubname` set to the final ones, and
   deletes the marker. A failure before the end hands the intent back to the broker, which delivers
   it again: at-least-once, as daprd.

A missing marker is looked for again as daprd does: 1s after the intent arrives, then with backoff
(0.5s, times 3, at most 3s apart, for 10s). Still missing, the intent is dropped when
`outboxDiscardWhenMissingState` is true, else handed back to be tried later. localdapr does exactly
that for an intent whose transaction it did not see end (after a restart, or one run by another
replica). For the transactions this sidecar runs itself it knows the outcome and uses it: a committed
one is published as soon as its marker is read, without daprd's 1s wait (a broker that delivers one
message at a time, such as pubsub.in-memory by default, would otherwise publish one event a second),
and one the store refused (an etag mismatch: nothing was written) is dropped at once, since its
marker can never appear; daprd cannot tell, and keeps retrying such an intent when told not to discard.

The published CloudEvent is built as daprd builds it: contrib's NewCloudEventsEnvelope with the intent
id, the app id as source, `traceparent` empty and the trace in `traceid`, and then every metadata entry
of the upsert but `data` and `id` copied in as an attribute (so `type: X` overrides the type and
`outbox.cloudevent.myapp: v` becomes an attribute of that name). An upsert whose metadata has a truthy
`outbox.projection` is not saved: its value (and content type) is what is published for the upsert of
the same key, whose value is saved.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import os
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from localdapr import errors
from localdapr.bindings.gocompat import decode_json, is_truthy, marshal_json
from localdapr.components.spec import ComponentSpec
from localdapr.errors import DaprError
from localdapr.pubsub.base import BrokerMessage, MessageHandler, NotProcessed
from localdapr.state.base import EtagInvalid, EtagMismatch, StateItem, StateStore, TransactionOp

if TYPE_CHECKING:
    from localdapr.runtime import LoadedPubSub, LoadedStore

log = logging.getLogger("localdapr.outbox")

PUBLISH_PUBSUB = "outboxPublishPubsub"
PUBLISH_TOPIC = "outboxPublishTopic"
OUTBOX_PUBSUB = "outboxPubsub"
INTERNAL_TOPIC = "outboxInternalTopic"
DISCARD_WHEN_MISSING_STATE = "outboxDiscardWhenMissingState"
PROJECTION = "outbox.projection"
MARKER_PREFIX = "outbox-"
# daprd saves the Go string "0" as the marker's value, which the stores JSON-encode.
MARKER_VALUE = b'"0"'

STATE_SCAN_DELAY = 1.0  # daprd's wait before the first look for a marker
# daprd's backoff (cenkalti ExponentialBackOff) for reading a marker and for deleting it.
RETRY_INITIAL = 0.5
RETRY_MULTIPLIER = 3.0
RETRY_MAX_INTERVAL = 3.0
RETRY_MAX_ELAPSED = 10.0
RETRY_JITTER = 0.1
# How long the relay waits for a transaction of this sidecar that is still running; past it the
# intent is treated like one from elsewhere. And how long an outcome is kept for an intent that may
# have gone to another replica's relay.
OUTCOME_WAIT = 10.0
OUTCOME_TTL = 60.0


@dataclass(frozen=True, slots=True)
class OutboxSettings:
    """The outbox metadata of one state store."""

    store: str
    publish_pubsub: str
    publish_topic: str
    outbox_pubsub: str
    internal_topic: str
    discard_when_missing_state: bool

    @classmethod
    def of(cls, spec: ComponentSpec, app_id: str) -> OutboxSettings | None:
        """None when the store has no outbox: daprd turns it on only when both publish fields are set."""
        pubsub = spec.metadata.get(PUBLISH_PUBSUB, "")
        topic = spec.metadata.get(PUBLISH_TOPIC, "")
        if not pubsub or not topic:
            if pubsub or topic:
                log.warning(
                    "%s: state store %r has only one of %s and %s; its outbox is off (daprd needs both)",
                    spec.file,
                    spec.name,
                    PUBLISH_PUBSUB,
                    PUBLISH_TOPIC,
                )
            return None
        return cls(
            store=spec.name,
            publish_pubsub=pubsub,
            publish_topic=topic,
            outbox_pubsub=spec.metadata.get(OUTBOX_PUBSUB) or pubsub,
            # daprd's name for the internal topic is namespace + appID + topic + "outbox"; a localdapr
            # sidecar has no namespace.
            internal_topic=spec.metadata.get(INTERNAL_TOPIC) or f"{app_id}{topic}outbox",
            discard_when_missing_state=is_truthy(spec.metadata.get(DISCARD_WHEN_MISSING_STATE, "")),
        )


class Outbox:
    """The outbox of one sidecar: publishes intents around its transactions and relays them."""

    def __init__(
        self, app_id: str, states: Mapping[str, LoadedStore], pubsubs: Mapping[str, LoadedPubSub]
    ) -> None:
        self.app_id = app_id
        self._states = states
        self._pubsubs = pubsubs
        self._settings: dict[str, OutboxSettings] = {}
        self._subscriptions: list[tuple[LoadedPubSub, str, str, MessageHandler]] = []
        # Intent id -> the outcome of the transaction this sidecar runs for it: True committed, False
        # refused (nothing written), None unknown (the store failed in a way that may have written).
        self._outcomes: dict[str, asyncio.Future[bool | None]] = {}

    def add(self, spec: ComponentSpec) -> None:
        settings = OutboxSettings.of(spec, self.app_id)
        if settings is not None:
            self._settings[spec.name] = settings

    def enabled(self, store: str) -> bool:
        return store in self._settings

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Subscribe to every internal topic (once the components are loaded, app or not, as daprd)."""
        for settings in self._settings.values():
            loaded = self._pubsubs.get(settings.outbox_pubsub)
            if loaded is None:
                log.warning(
                    "[%s] could not subscribe to internal outbox topic: outbox pubsub %s not loaded",
                    self.app_id,
                    settings.outbox_pubsub,
                )
                continue
            if settings.publish_pubsub not in self._pubsubs:
                log.warning(
                    "[%s] state store %s publishes its outbox to pubsub %s, which is not loaded: "
                    "its events stay on %s until it is",
                    self.app_id,
                    settings.store,
                    settings.publish_pubsub,
                    settings.internal_topic,
                )
            group = loaded.spec.get("consumerID") or self.app_id

            async def relay(message: BrokerMessage, _settings: OutboxSettings = settings) -> None:
                await self._relay(_settings, message)

            await loaded.broker.subscribe(settings.internal_topic, group, relay)
            self._subscriptions.append((loaded, settings.internal_topic, group, relay))

    async def stop(self) -> None:
        """Unsubscribe; intents not yet relayed stay with the broker for the next start."""
        subscriptions, self._subscriptions = self._subscriptions, []
        for loaded, topic, group, relay in subscriptions:
            try:
                await loaded.broker.unsubscribe(topic, group, relay)
            except Exception:  # the other subscriptions must still be stopped
                log.exception("[%s] unsubscribing from outbox topic %s failed", self.app_id, topic)

    # ------------------------------------------------------------------ phase 1: the transaction
    async def transact(
        self,
        store: str,
        ops: Sequence[TransactionOp],
        json_values: bool,
        commit: Callable[[list[TransactionOp]], Awaitable[None]],
    ) -> None:
        """Publish an intent per upsert, then `commit` the operations (without projections) and markers."""
        settings = self._settings[store]
        projections: dict[str, StateItem] = {}
        writes: list[TransactionOp] = []
        for op in ops:
            if op.operation == "upsert" and is_truthy(op.item.metadata.get(PROJECTION, "")):
                # daprd's docs: of several projections of one key, the first is used.
                projections.setdefault(op.item.key, op.item)
            else:
                writes.append(op)
        traceparent = f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"
        intents: list[dict[str, Any]] = []
        for op in writes:
            if op.operation != "upsert":
                continue  # deletes publish nothing, as in daprd
            data, content_type = published_payload(projections.get(op.item.key, op.item), json_values)
            intents.append(
                intent_event(
                    marker=f"{MARKER_PREFIX}{uuid.uuid4()}",
                    source=self.app_id,
                    pubsub_name=settings.outbox_pubsub,
                    data=data,
                    content_type=content_type,
                    traceparent=traceparent,
                    metadata=op.item.metadata,
                )
            )
        markers = [TransactionOp("upsert", StateItem(key=i["id"], value=MARKER_VALUE)) for i in intents]
        loop = asyncio.get_running_loop()
        outcomes: dict[str, asyncio.Future[bool | None]] = {i["id"]: loop.create_future() for i in intents}
        self._outcomes.update(outcomes)
        outcome: bool | None = False  # until the commit starts, nothing can have been written
        try:
            for intent in intents:
                await self._publish_intent(settings, intent)
            outcome = None
            try:
                await commit(writes + markers)
            except DaprError as exc:
                if isinstance(exc.__cause__, EtagMismatch | EtagInvalid):
                    outcome = False  # every store checks all etags before it writes anything
                raise
            outcome = True
        finally:
            for marker, future in outcomes.items():
                future.set_result(outcome)
                loop.call_later(OUTCOME_TTL, self._outcomes.pop, marker, None)

    async def _publish_intent(self, settings: OutboxSettings, intent: dict[str, Any]) -> None:
        loaded = self._pubsubs.get(settings.outbox_pubsub)
        if loaded is None:
            raise errors.pubsub_outbox(self.app_id, f"pubsub '{settings.outbox_pubsub}' not found")
        try:
            await loaded.broker.publish(settings.internal_topic, json.dumps(intent).encode(), {})
        except Exception as exc:
            raise errors.pubsub_outbox(self.app_id, str(exc) or type(exc).__name__) from exc

    # ------------------------------------------------------------------ phase 2: the relay
    async def _relay(self, settings: OutboxSettings, message: BrokerMessage) -> None:
        """Publish one intent once its marker is found; raising hands it back to the broker."""
        try:
            intent = json.loads(message.data)
        except ValueError as exc:
            raise NotProcessed(f"outbox: unreadable message on {settings.internal_topic}: {exc}") from exc
        if not isinstance(intent, dict):
            raise NotProcessed(f"outbox: message on {settings.internal_topic} is not a CloudEvent")
        marker = intent.get("id") if isinstance(intent.get("id"), str) else ""
        outcome = await self._outcome(marker)
        if outcome is False:
            log.info(
                "[%s] outbox: the transaction of %s was refused by state store %s; nothing to publish",
                self.app_id,
                marker,
                settings.store,
            )
            return
        if outcome is None:
            await asyncio.sleep(STATE_SCAN_DELAY)  # daprd gives the transaction that long to commit
        loaded = self._states.get(settings.store)
        if loaded is None:
            raise NotProcessed(f"cannot get outbox state: state store {settings.store} not found")
        store = loaded.store
        try:
            await _retry(lambda: _require_marker(store, marker, settings))
        except Exception as exc:
            if settings.discard_when_missing_state:
                log.error(
                    "[%s] failed to publish outbox topic to pubsub %s: %s, discarding message",
                    self.app_id,
                    settings.publish_pubsub,
                    exc,
                )
                return
            log.error(
                "[%s] failed to publish outbox topic to pubsub %s: %s, rejecting for later processing",
                self.app_id,
                settings.publish_pubsub,
                exc,
            )
            raise NotProcessed(str(exc)) from exc
        target = self._pubsubs.get(settings.publish_pubsub)
        if target is None:
            raise NotProcessed(f"outbox: pubsub '{settings.publish_pubsub}' not found")
        intent["topic"] = settings.publish_topic
        intent["pubsubname"] = settings.publish_pubsub
        await target.broker.publish(settings.publish_topic, json.dumps(intent).encode(), {})
        # A marker that cannot be deleted sends the intent round again: published twice, not lost.
        await _retry(lambda: store.delete(marker))

    async def _outcome(self, marker: str) -> bool | None:
        """The outcome of this sidecar's transaction for `marker`, waiting while it runs; None if unknown."""
        future = self._outcomes.pop(marker, None)
        # The relay of a broker shared with a sidecar on another event loop can run on that loop.
        if future is None or future.get_loop() is not asyncio.get_running_loop():
            return None
        try:
            return await asyncio.wait_for(asyncio.shield(future), OUTCOME_WAIT)
        except TimeoutError:
            return None


async def _require_marker(store: StateStore, marker: str, settings: OutboxSettings) -> None:
    found = await store.get(marker)
    if found is None or not found.data:
        raise LookupError(
            f"cannot publish outbox message to topic {settings.publish_topic} with pubsub "
            f"{settings.publish_pubsub}: outbox state not found"
        )


async def _retry(call: Callable[[], Awaitable[None]]) -> None:
    """Run `call` until it succeeds, as backoff.Retry with daprd's outbox policy: the last error is
    raised once the next wait would end more than RETRY_MAX_ELAPSED after the first call."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    interval = RETRY_INITIAL
    while True:
        try:
            await call()
            return
        except Exception:
            delay = interval * random.uniform(1 - RETRY_JITTER, 1 + RETRY_JITTER)
            interval = min(interval * RETRY_MULTIPLIER, RETRY_MAX_INTERVAL)
            if loop.time() - start + delay > RETRY_MAX_ELAPSED:
                raise
        await asyncio.sleep(delay)


# ---------------------------------------------------------------------- the CloudEvent
def published_payload(item: StateItem, json_values: bool) -> tuple[bytes, str]:
    """The bytes daprd's outbox puts in the CloudEvent for an upsert (or its projection), and their
    content type: the request's `contentType` field, else its `contentType` metadata.

    Over gRPC the value is the request's bytes. Over HTTP daprd holds the value decoded from the JSON
    body: it is re-encoded as Go's JSON when the content type is application/json, else formatted with
    Go's %v (a string as itself, an object as `map[k:v]`).
    """
    content_type = item.content_type
    if content_type is None:
        content_type = item.metadata.get("contentType", "")
    if not json_values:
        return item.value, content_type
    try:
        value = decode_json(item.value)
    except ValueError as exc:  # NaN or Infinity, which Go's decoder would have refused with the body
        raise errors.malformed(f"failed deserializing state value: {exc}") from exc
    if content_type.lower() == "application/json":
        return marshal_json(value), content_type
    return go_value_text(value).encode(), content_type


def intent_event(
    *,
    marker: str,
    source: str,
    pubsub_name: str,
    data: bytes,
    content_type: str,
    traceparent: str,
    metadata: Mapping[str, str],
) -> dict[str, Any]:
    """The CloudEvent of an intent: contrib's NewCloudEventsEnvelope as daprd's outbox calls it."""
    content_type = content_type or "text/plain"
    event: dict[str, Any] = {
        "id": marker,
        "specversion": "1.0",
        "datacontenttype": content_type,
        "source": source,
        "type": "com.dapr.event.sent",
        "topic": "",
        "pubsubname": pubsub_name,
        # daprd passes the request's trace as the trace id and none as the traceparent.
        "traceid": traceparent,
        "traceparent": "",
        "tracestate": "",
        "time": _rfc3339_now(),
    }
    if _is_media_type(content_type, "application/json"):
        try:
            event["data"] = json.loads(data, parse_constant=_not_json)
        except ValueError:  # contrib falls back to the text when JSON does not parse
            event["data"] = data.decode("utf-8", errors="replace")
    elif _is_media_type(content_type, "application/octet-stream"):
        event["data_base64"] = base64.b64encode(data).decode()
    else:
        event["data"] = data.decode("utf-8", errors="replace")
    for key, value in metadata.items():
        if key not in ("data", "id"):  # the two attributes daprd does not let metadata override
            event[key] = value
    return event


def _is_media_type(content_type: str, expected: str) -> bool:
    """contrib's contenttype check: the type, in any case, with or without parameters."""
    return content_type.lower().split(";", 1)[0] == expected


def _not_json(token: str) -> Any:
    raise ValueError(f"{token} is not JSON")  # Go's decoder refuses NaN and Infinity


def _rfc3339_now() -> str:
    """Go's time.Now().Format(time.RFC3339): local time to the second, UTC written as Z."""
    text = datetime.now().astimezone().isoformat(timespec="seconds")
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def go_value_text(value: Any) -> str:
    """fmt.Sprintf("%v", v) of a value Go's encoding/json decoded into an interface{}."""
    if value is None:
        return "<nil>"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return _go_float(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + " ".join(go_value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{go_value_text(value[k])}" for k in sorted(value)) + "]"
    raise TypeError(f"not a decoded JSON value: {type(value).__name__}")


def _go_float(value: float) -> str:
    """%v of a float64 (strconv's 'g' with the shortest digits): exponent form when the exponent is
    below -4 or at least 6, so 1000000 is `1e+06`."""
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digit_tuple, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    point = len(digits) + exponent  # where the decimal point falls in `digits`
    neg = "-" if sign else ""
    exp = point - 1
    if exp < -4 or exp >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{neg}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    if point <= 0:
        return f"{neg}0.{'0' * -point}{digits}"
    if point >= len(digits):
        return neg + digits + "0" * (point - len(digits))
    return f"{neg}{digits[:point]}.{digits[point:]}"
