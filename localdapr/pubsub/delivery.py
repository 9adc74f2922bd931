"""Delivering broker messages to the app as CloudEvents, and reading the app's answer (contract 4.3/4.4).

For each subscription (programmatic, from the app, or declarative files) the sidecar subscribes to the
broker with the app id as consumer group, routes each event (rules, then default), hands it to the
app and interprets the answer: SUCCESS -> ack; DROP -> dropped (to the dead-letter topic when one is
set); RETRY, any other failure or an unreachable app -> retried under the inbound resiliency policy,
then dead-lettered if a dead-letter topic is set, else handed back to the broker (which redelivers:
at-least-once).

The app is reached through a TopicSink, one per app protocol, as daprd's HTTP and gRPC postmen:
HttpTopicSink asks `GET /dapr/subscribe` and POSTs the CloudEvent (`application/cloudevents+json`) to
the route, reading the status and `{"status": ...}` body; GrpcTopicSink asks
AppCallback.ListTopicSubscriptions and calls OnTopicEvent with the route as `path`, reading the
TopicEventResponse status (UNIMPLEMENTED is read like HTTP 404). Nothing else here depends on the
protocol. A streaming subscription (`localdapr/pubsub/streaming.py`) is one more sink: the same
Subscriber delivers to a client's SubscribeTopicEventsAlpha1 stream instead of the app.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import grpc
from dapr.proto import appcallback_v1
from google.protobuf import empty_pb2

from localdapr.appchannel import AppChannel, GrpcAppChannel
from localdapr.appchannel.grpc import rpc_error_text
from localdapr.bindings.gocompat import marshal_json
from localdapr.components.spec import RouteRule, SubscriptionSpec, parse_bulk_subscribe
from localdapr.errors import ComponentError
from localdapr.pubsub.base import BULK_IN_FLIGHT, BrokerMessage, NotProcessed
from localdapr.pubsub.cloudevents import CLOUDEVENT_CONTENT_TYPE, expired, is_raw, wrap_raw
from localdapr.pubsub.routing import Rule, RuleError
from localdapr.resiliency import Resiliency
from localdapr.runtime import DaprRuntime
from localdapr.telemetry import bind
from localdapr.telemetry.api import deliver_observed, delivery_trace_headers

log = logging.getLogger("localdapr.pubsub")

SUCCESS, RETRY, DROP = "SUCCESS", "RETRY", "DROP"


def outcome_of(status: int, body: bytes) -> str:
    """The HTTP app's answer to a delivery, as daprd reads it."""
    if status == 404:
        return DROP
    if not 200 <= status < 300:
        return RETRY
    try:
        parsed = json.loads(body) if body else None
    except ValueError:
        return SUCCESS
    if not isinstance(parsed, dict):
        return SUCCESS
    answer = str(parsed.get("status", "") or "")
    if answer in ("", SUCCESS):
        return SUCCESS
    if answer == DROP:
        return DROP
    return RETRY  # RETRY, and any unknown status string, is a retriable failure


BULK_EVENT_TYPE = "com.dapr.event.sent.bulk"


def bulk_outcomes(status: int, body: bytes, entry_ids: list[str]) -> dict[str, str]:
    """The HTTP app's answer to a bulk delivery, per entry, as daprd reads it (postman/http DeliverBulk).

    2xx: `{"statuses": [{"entryId", "status"}]}`; SUCCESS and DROP as named, anything else (RETRY, "",
    an unknown string) and every entry the answer does not mention is retried, and so is every entry
    when the body is not such JSON (unlike a single delivery, where an unreadable body is a success).
    404: every entry dropped. Any other status: every entry retried."""
    if status == 404:
        return dict.fromkeys(entry_ids, DROP)
    outcomes = dict.fromkeys(entry_ids, RETRY)
    if not 200 <= status < 300:
        return outcomes
    try:
        parsed = json.loads(body)
    except ValueError:
        return outcomes
    statuses = parsed.get("statuses") if isinstance(parsed, dict) else None
    for answer in statuses if isinstance(statuses, list) else []:
        if not isinstance(answer, dict):
            continue
        entry_id = answer.get("entryId")
        if entry_id not in outcomes:
            continue  # daprd logs and ignores an entry id it did not send
        if answer.get("status") == SUCCESS:
            outcomes[entry_id] = SUCCESS
        elif answer.get("status") == DROP:
            outcomes[entry_id] = DROP
        else:
            outcomes[entry_id] = RETRY
    return outcomes


def bulk_envelope(spec: SubscriptionSpec, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """daprd's BulkSubscribeEnvelope: one POST body carrying several entries."""
    return {
        "id": str(uuid.uuid4()),
        "type": BULK_EVENT_TYPE,
        "topic": spec.topic,
        "pubsubname": spec.pubsub_name,
        "metadata": {"pubsubName": spec.pubsub_name},
        "entries": entries,
    }


class TopicSink(Protocol):
    """The app's side of pub/sub, over its app protocol."""

    async def subscriptions(self) -> list[SubscriptionSpec]:
        """The app's programmatic subscriptions; none (logged) when the app cannot say."""
        ...

    async def deliver(
        self, spec: SubscriptionSpec, route: str, event: dict[str, Any], timeout: float | None
    ) -> tuple[str, str]:
        """Hand one event to the app: its answer (SUCCESS, RETRY or DROP) and a detail for the log.
        Never raises for the app's failure."""
        ...


@dataclass(slots=True)
class HttpTopicSink:
    app_id: str
    channel: AppChannel

    async def subscriptions(self) -> list[SubscriptionSpec]:
        try:
            resp = await self.channel.request(
                "GET", "/dapr/subscribe", headers={"dapr-app-id": self.app_id}, timeout=10
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("[%s] GET /dapr/subscribe failed: %s", self.app_id, exc)
            return []
        if resp.status == 404 or not 200 <= resp.status < 300:
            return []
        try:
            entries = resp.json() or []
        except ValueError:
            log.warning("[%s] /dapr/subscribe did not answer JSON; no subscriptions", self.app_id)
            return []
        specs: list[SubscriptionSpec] = []
        for entry in entries:
            routes = entry.get("routes") or {}
            default = routes.get("default") or entry.get("route")
            rules = routes.get("rules") or []
            if not default and not rules:
                log.warning("[%s] subscription to %s has no route; ignored", self.app_id, entry)
                continue
            specs.append(
                SubscriptionSpec(
                    pubsub_name=str(entry.get("pubsubname", "")),
                    topic=str(entry.get("topic", "")),
                    default_route=default,
                    rules=[RouteRule(str(r["match"]), str(r["path"])) for r in rules],
                    dead_letter_topic=entry.get("deadLetterTopic") or None,
                    metadata={str(k): str(v) for k, v in (entry.get("metadata") or {}).items()},
                    bulk=self._bulk_of(entry),
                )
            )
        return specs

    def _bulk_of(self, entry: dict[str, Any]) -> Any:
        try:
            return parse_bulk_subscribe(entry.get("bulkSubscribe"), f"subscription to {entry.get('topic')!r}")
        except ValueError as exc:
            log.warning("[%s] %s; delivering one event at a time", self.app_id, exc)
            return None

    async def deliver_bulk(
        self, spec: SubscriptionSpec, route: str, entries: list[dict[str, Any]], timeout: float | None
    ) -> tuple[dict[str, str], str]:
        """Hand several events to the app in one POST (daprd's bulk envelope): each entry's answer
        (SUCCESS, RETRY or DROP) by entry id, and a detail for the log. Never raises for the app's failure."""
        ids = [str(e["entryId"]) for e in entries]
        headers = {"content-type": "application/json", "pubsubName": spec.pubsub_name}
        try:
            resp = await self.channel.request(
                "POST",
                route,
                body=json.dumps(bulk_envelope(spec, entries)).encode(),
                headers=headers,
                timeout=timeout or 60,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return dict.fromkeys(ids, RETRY), f"app unreachable: {exc}"
        return bulk_outcomes(resp.status, resp.body, ids), f"status {resp.status}"

    async def deliver(
        self, spec: SubscriptionSpec, route: str, event: dict[str, Any], timeout: float | None
    ) -> tuple[str, str]:
        headers = {"content-type": CLOUDEVENT_CONTENT_TYPE, "pubsubName": spec.pubsub_name}
        headers.update(delivery_trace_headers(event))
        try:
            resp = await self.channel.request(
                "POST", route, body=json.dumps(event).encode(), headers=headers, timeout=timeout or 60
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return RETRY, f"app unreachable: {exc}"
        return outcome_of(resp.status, resp.body), f"status {resp.status}"


# CloudEvent attributes that have their own TopicEventRequest field; the rest travel as extensions.
_ENVELOPE_FIELDS = frozenset(
    {"id", "source", "datacontenttype", "type", "specversion", "data", "data_base64"}
)
TOPIC_EVENT_STATUS = {
    appcallback_v1.TopicEventResponse.SUCCESS: SUCCESS,
    appcallback_v1.TopicEventResponse.RETRY: RETRY,
    appcallback_v1.TopicEventResponse.DROP: DROP,
}


def _media_type(content_type: str) -> str:
    return content_type.lower().split(";", 1)[0].strip()


def topic_event_request(spec: SubscriptionSpec, route: str, event: dict[str, Any]) -> Any:
    """The TopicEventRequest daprd builds from a CloudEvent (GRPCEnvelopeFromSubscriptionMessage).

    `data` is `data_base64` decoded, or `data` as text for a text/* or application/xml content type,
    or `data` re-encoded as Go's JSON for a JSON or CloudEvents one; otherwise empty. Raises ValueError
    for data daprd cannot put in the envelope (the delivery is then retried, as daprd does).
    """

    def text(name: str) -> str:
        value = event.get(name)
        return value if isinstance(value, str) else ""

    request = appcallback_v1.TopicEventRequest(
        id=text("id"),
        source=text("source"),
        type=text("type"),
        spec_version=text("specversion"),
        data_content_type=text("datacontenttype"),
        topic=spec.topic,
        pubsub_name=spec.pubsub_name,
        path=route,
    )
    media_type = _media_type(request.data_content_type)
    if event.get("data_base64") is not None:
        encoded = event["data_base64"]
        if not isinstance(encoded, str):
            raise ValueError("unexpected data type encountered in envelope")
        try:
            request.data = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"unable to base64 decode cloudEvent field data_base64: {exc}") from exc
    elif event.get("data") is not None:
        data = event["data"]
        if media_type.startswith("text/") or media_type == "application/xml":
            if not isinstance(data, str):
                raise ValueError("unexpected data type encountered in envelope")
            request.data = data.encode()
        elif media_type in ("application/json", CLOUDEVENT_CONTENT_TYPE):
            request.data = marshal_json(data)
    request.extensions.update({k: v for k, v in event.items() if k not in _ENVELOPE_FIELDS})
    return request


@dataclass(slots=True)
class GrpcTopicSink:
    app_id: str
    channel: GrpcAppChannel

    async def subscriptions(self) -> list[SubscriptionSpec]:
        try:
            listed = await self.channel.callback.ListTopicSubscriptions(
                empty_pb2.Empty(), metadata=self.channel.metadata(), timeout=10
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.UNIMPLEMENTED:
                log.info("[%s] gRPC app does not implement ListTopicSubscriptions", self.app_id)
            else:
                log.warning("[%s] ListTopicSubscriptions failed: %s", self.app_id, rpc_error_text(exc))
            return []
        specs: list[SubscriptionSpec] = []
        for sub in listed.subscriptions:
            rules = [RouteRule(rule.match, rule.path) for rule in sub.routes.rules]
            # daprd: the default route when one is set; with no route at all, the default path "".
            default = sub.routes.default or (None if rules else "")
            specs.append(
                SubscriptionSpec(
                    pubsub_name=sub.pubsub_name,
                    topic=sub.topic,
                    default_route=default,
                    rules=rules,
                    dead_letter_topic=sub.dead_letter_topic or None,
                    metadata=dict(sub.metadata),
                )
            )
        return specs

    async def deliver(
        self, spec: SubscriptionSpec, route: str, event: dict[str, Any], timeout: float | None
    ) -> tuple[str, str]:
        try:
            request = topic_event_request(spec, route, event)
        except ValueError as exc:
            return RETRY, str(exc)
        metadata = [("pubsubname", spec.pubsub_name)]
        metadata += delivery_trace_headers(event)
        try:
            answer = await self.channel.callback.OnTopicEvent(
                request, metadata=self.channel.metadata(metadata), timeout=timeout or 60
            )
        except grpc.aio.AioRpcError as exc:
            # daprd reads UNIMPLEMENTED (no handler for this topic or path) as non-retriable.
            outcome = DROP if exc.code() is grpc.StatusCode.UNIMPLEMENTED else RETRY
            return outcome, rpc_error_text(exc)
        status = TOPIC_EVENT_STATUS.get(answer.status, RETRY)  # an unknown status is retried, as in daprd
        return (
            status,
            f"status {appcallback_v1.TopicEventResponse.TopicEventResponseStatus.Name(answer.status)}",
        )


class BulkBatcher:
    """Gathers a bulk subscription's messages into batches, as daprd's default bulk subscriber does.

    The broker hands each message to `submit` (concurrently: see BULK_IN_FLIGHT); a batch is flushed
    when it has `max_messages` messages or `max_await` seconds after its first one arrived, and every
    `submit` returns (ack) or raises NotProcessed (the broker redelivers) with its own entry's result.
    """

    def __init__(
        self,
        max_messages: int,
        max_await: float,
        flush: Callable[[list[BrokerMessage]], Awaitable[list[BaseException | None]]],
    ) -> None:
        self.max_messages = max_messages
        self.max_await = max_await
        self._flush = flush
        self._pending: list[tuple[BrokerMessage, asyncio.Future[None]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, msg: BrokerMessage) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((msg, future))
        if len(self._pending) >= self.max_messages:
            self._flush_now()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_await, self._flush_now)
        await future

    def _flush_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        # A message whose handler was cancelled meanwhile (the sidecar stopping) is the broker's again.
        batch = [(msg, fut) for msg, fut in self._pending if not fut.done()]
        self._pending = []
        if batch:
            task = asyncio.get_running_loop().create_task(self._run(batch), name="bulk delivery")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[BrokerMessage, asyncio.Future[None]]]) -> None:
        try:
            results = await self._flush([msg for msg, _ in batch])
        except Exception as exc:  # a bug or the broker failing a dead-letter publish: redeliver all
            log.exception("bulk delivery failed")
            results = [NotProcessed(f"bulk delivery failed: {exc}")] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if result is None:
                future.set_result(None)
            else:
                future.set_exception(result)

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for _, future in self._pending:
            if not future.done():
                future.set_exception(NotProcessed("sidecar stopping"))
        self._pending = []
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class ActiveSubscription:
    spec: SubscriptionSpec
    rules: list[tuple[Rule, str]]
    handler: Any = None
    consumer_group: str = ""
    delivered: int = 0
    dead_lettered: int = 0
    dropped: int = 0
    batcher: BulkBatcher | None = None


@dataclass
class Subscriber:
    runtime: DaprRuntime
    sink: TopicSink
    resiliency: Resiliency
    active: list[ActiveSubscription] = field(default_factory=list)

    async def start(self, declarative: list[SubscriptionSpec]) -> None:
        specs = await self.sink.subscriptions()
        specs += [s for s in declarative if s.applies_to(self.runtime.app_id)]
        for spec in specs:
            if spec.pubsub_name not in self.runtime.pubsubs:
                log.warning(
                    "[%s] subscription to topic %r names pubsub %r which is not loaded for this app; skipped",
                    self.runtime.app_id,
                    spec.topic,
                    spec.pubsub_name,
                )
                continue
            if not self.runtime.pubsubs[spec.pubsub_name].scopes.may_subscribe(spec.topic):
                log.warning(  # daprd's words for a topic its subscriptionScopes / allowedTopics forbid
                    "[%s] subscription to topic %s on pubsub %s is not allowed",
                    self.runtime.app_id,
                    spec.topic,
                    spec.pubsub_name,
                )
                continue
            await self.add(spec)

    async def add(self, spec: SubscriptionSpec) -> None:
        """Subscribe one spec (its pubsub must be loaded) with the app id as consumer group."""
        try:
            rules = [(Rule(r.match), r.path) for r in spec.rules]
        except RuleError as exc:
            raise ComponentError(f"{spec.source}: {exc}") from exc
        active = ActiveSubscription(spec=spec, rules=rules)
        loaded = self.runtime.pubsubs[spec.pubsub_name]
        active.consumer_group = loaded.spec.get("consumerID") or self.runtime.app_id

        metadata = spec.metadata
        if spec.bulk is not None and hasattr(self.sink, "deliver_bulk"):

            async def flush(
                msgs: list[BrokerMessage], _active: ActiveSubscription = active
            ) -> list[BaseException | None]:
                return await self._handle_bulk(_active, msgs)

            batcher = active.batcher = BulkBatcher(
                spec.bulk.max_messages, spec.bulk.max_await_ms / 1000, flush
            )
            handler: Callable[[BrokerMessage], Awaitable[None]] = batcher.submit
            # Brokers that bound the messages in flight per subscription must let a batch fill.
            metadata = {**spec.metadata, BULK_IN_FLIGHT: str(spec.bulk.max_messages)}
        else:
            if spec.bulk is not None:
                log.info(  # gRPC apps and streaming subscriptions: one event per call
                    "[%s] bulkSubscribe on %s: this app channel delivers one event at a time",
                    self.runtime.app_id,
                    spec.topic,
                )

            async def handler(msg: BrokerMessage, _active: ActiveSubscription = active) -> None:
                await self._handle(_active, msg)

        active.handler = handler
        await loaded.broker.subscribe(spec.topic, active.consumer_group, handler, metadata)
        self.active.append(active)
        log.info("[%s] subscribed to %s/%s", self.runtime.app_id, spec.pubsub_name, spec.topic)

    async def stop(self) -> None:
        for active in self.active:
            loaded = self.runtime.pubsubs.get(active.spec.pubsub_name)
            if loaded is not None:
                try:
                    await loaded.broker.unsubscribe(active.spec.topic, active.consumer_group, active.handler)
                except Exception:
                    log.exception("unsubscribe failed")
            if active.batcher is not None:
                await active.batcher.close()
        self.active.clear()

    # ------------------------------------------------------------------ one message
    def _event_of(self, active: ActiveSubscription, msg: BrokerMessage) -> dict[str, Any]:
        if is_raw(active.spec.metadata):
            return wrap_raw(msg.data, active.spec.topic, active.spec.pubsub_name)
        try:
            event = json.loads(msg.data)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            # A raw payload published without a raw subscription: wrap it rather than lose it.
            return wrap_raw(msg.data, active.spec.topic, active.spec.pubsub_name)
        return event

    def _route(self, active: ActiveSubscription, event: dict[str, Any]) -> str | None:
        for rule, path in active.rules:
            if rule.matches(event):
                return path
        return active.spec.default_route

    async def _deliverable_route(self, active: ActiveSubscription, event: dict[str, Any]) -> str | None:
        """The route `event` goes to; None when it expired or no rule matched it (then it was
        dead-lettered if the subscription has a topic for that, else it is just acked)."""
        if expired(event):
            log.warning(
                "[%s] event %s on %s expired; dropped",
                self.runtime.app_id,
                event.get("id"),
                active.spec.topic,
            )
            await self._dead_letter(active, event)
            return None
        route = self._route(active, event)
        if route is None:
            await self._dead_letter(active, event)
        return route

    async def _handle(self, active: ActiveSubscription, msg: BrokerMessage) -> None:
        event = self._event_of(active, msg)
        spec = active.spec
        route = await self._deliverable_route(active, event)
        if route is None:
            return
        policy = self.resiliency.for_pubsub_inbound(spec.pubsub_name)
        delays = policy.retry.delays() if policy.retry else iter(())
        breaker = policy.breaker
        while True:
            if breaker is not None and not breaker.allow():
                # Open: the app is not called; the attempt fails as a RETRY would (back to the broker
                # or dead-lettered once the retries are spent).
                outcome, detail = RETRY, "circuit breaker is open"
            else:
                outcome, detail = await deliver_observed(
                    self.runtime.telemetry,
                    lambda: self.sink.deliver(spec, route, event, policy.timeout),
                    spec.pubsub_name,
                    spec.topic,
                    event,
                )
                if breaker is not None:
                    breaker.record(outcome != RETRY)  # DROP is the app's own decision, not a failure
            if outcome == SUCCESS:
                active.delivered += 1
                return
            if outcome == DROP:
                await self._dropped(active, event, detail)
                return
            delay = next(delays, None)
            if delay is None:
                break
            await asyncio.sleep(delay)
        if spec.dead_letter_topic:
            await self._dead_letter(active, event)
            return
        raise NotProcessed(
            f"delivery of {event.get('id')} to {route} failed ({detail}); broker will redeliver"
        )

    # ------------------------------------------------------------------ a batch (bulkSubscribe)
    async def _handle_bulk(
        self, active: ActiveSubscription, msgs: list[BrokerMessage]
    ) -> list[BaseException | None]:
        """Deliver a batch in one call per route; each message's result: None (ack) or NotProcessed.

        Per entry as `_handle` does for one: expired or unrouted -> dead letter (or ack); SUCCESS -> ack;
        DROP -> dropped (dead letter); RETRY -> the entries still failing are sent again under the
        inbound policy, then dead-lettered if a topic is set, else handed back to the broker."""
        spec = active.spec
        results: list[BaseException | None] = [None] * len(msgs)
        events: dict[str, tuple[int, dict[str, Any]]] = {}
        by_route: dict[str, list[dict[str, Any]]] = {}
        raw = is_raw(spec.metadata)
        for i, msg in enumerate(msgs):
            event = self._event_of(active, msg)
            route = await self._deliverable_route(active, event)
            if route is None:
                continue
            entry_id = str(uuid.uuid4())
            events[entry_id] = (i, event)
            entry: dict[str, Any] = {"entryId": entry_id, "metadata": dict(msg.metadata)}
            if raw:  # daprd sends a raw payload's bytes as base64 text
                entry["event"] = event["data_base64"]
                entry["contentType"] = "application/octet-stream"
            else:
                entry["event"] = event
                entry["contentType"] = CLOUDEVENT_CONTENT_TYPE
            by_route.setdefault(route, []).append(entry)
        for route, entries in by_route.items():
            failed, detail = await self._deliver_bulk_route(active, route, entries, events)
            for entry_id in failed:
                i, event = events[entry_id]
                if spec.dead_letter_topic:
                    await self._dead_letter(active, event)
                else:
                    results[i] = NotProcessed(
                        f"bulk delivery of {event.get('id')} to {route} failed ({detail}); redelivering"
                    )
        return results

    async def _deliver_bulk_route(
        self,
        active: ActiveSubscription,
        route: str,
        entries: list[dict[str, Any]],
        events: dict[str, tuple[int, dict[str, Any]]],
    ) -> tuple[list[str], str]:
        """POST the entries (then those the app asked to retry) until none fail or the policy gives up:
        the entry ids still failing, and the last detail."""
        spec = active.spec
        policy = self.resiliency.for_pubsub_inbound(spec.pubsub_name)
        delays = policy.retry.delays() if policy.retry else iter(())
        breaker = policy.breaker
        telemetry = self.runtime.telemetry
        bind(telemetry)  # as deliver_observed does: this task's calls are counted as this sidecar's
        pending = entries
        detail = ""
        while True:
            started = time.perf_counter()
            if breaker is not None and not breaker.allow():
                outcomes, detail = (
                    dict.fromkeys((e["entryId"] for e in pending), RETRY),
                    "circuit breaker is open",
                )
            else:
                outcomes, detail = await self.sink.deliver_bulk(spec, route, pending, policy.timeout)  # type: ignore[attr-defined]
                if breaker is not None:
                    breaker.record(any(o != RETRY for o in outcomes.values()))
            retry: list[dict[str, Any]] = []
            for entry in pending:
                outcome = outcomes[entry["entryId"]]
                telemetry.delivered(spec.pubsub_name, spec.topic, outcome, started)
                if outcome == SUCCESS:
                    active.delivered += 1
                elif outcome == DROP:
                    await self._dropped(active, events[entry["entryId"]][1], detail)
                else:
                    retry.append(entry)
            if not retry:
                return [], detail
            delay = next(delays, None)
            if delay is None:
                return [e["entryId"] for e in retry], detail
            pending = retry
            await asyncio.sleep(delay)

    async def _dropped(self, active: ActiveSubscription, event: dict[str, Any], detail: str) -> None:
        """The app answered DROP: logged, counted and dead-lettered (when the subscription has a topic)."""
        log.warning(
            "[%s] app dropped event %s on %s (%s)",
            self.runtime.app_id,
            event.get("id"),
            active.spec.topic,
            detail,
        )
        active.dropped += 1
        await self._dead_letter(active, event)

    async def _dead_letter(self, active: ActiveSubscription, event: dict[str, Any]) -> None:
        topic = active.spec.dead_letter_topic
        if not topic:
            return
        loaded = self.runtime.pubsubs[active.spec.pubsub_name]
        event = dict(event)
        event["topic"] = topic
        if "data_base64" in event and is_raw(active.spec.metadata):
            data = base64.b64decode(event["data_base64"])
            await loaded.broker.publish(topic, data, {"rawPayload": "true"})
        else:
            await loaded.broker.publish(topic, json.dumps(event).encode(), {})
        active.dead_lettered += 1
