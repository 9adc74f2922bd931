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
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import grpc
from dapr.proto import appcallback_v1
from google.protobuf import empty_pb2

from localdapr.appchannel import AppChannel, GrpcAppChannel
from localdapr.appchannel.grpc import rpc_error_text
from localdapr.bindings.gocompat import marshal_json
from localdapr.components.spec import RouteRule, SubscriptionSpec
from localdapr.errors import ComponentError
from localdapr.pubsub.base import BrokerMessage, NotProcessed
from localdapr.pubsub.cloudevents import CLOUDEVENT_CONTENT_TYPE, expired, is_raw, wrap_raw
from localdapr.pubsub.routing import Rule, RuleError
from localdapr.resiliency import Resiliency
from localdapr.runtime import DaprRuntime
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
                )
            )
        return specs

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


@dataclass
class ActiveSubscription:
    spec: SubscriptionSpec
    rules: list[tuple[Rule, str]]
    handler: Any = None
    consumer_group: str = ""
    delivered: int = 0
    dead_lettered: int = 0
    dropped: int = 0


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

        async def handler(msg: BrokerMessage, _active: ActiveSubscription = active) -> None:
            await self._handle(_active, msg)

        active.handler = handler
        await loaded.broker.subscribe(spec.topic, active.consumer_group, handler, spec.metadata)
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

    async def _handle(self, active: ActiveSubscription, msg: BrokerMessage) -> None:
        event = self._event_of(active, msg)
        spec = active.spec
        if expired(event):
            log.warning(
                "[%s] event %s on %s expired; dropped", self.runtime.app_id, event.get("id"), spec.topic
            )
            await self._dead_letter(active, event)
            return
        route = self._route(active, event)
        if route is None:
            await self._dead_letter(active, event)  # no rule matched: DLQ if configured, else ack
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
                log.warning(
                    "[%s] app dropped event %s on %s (%s)",
                    self.runtime.app_id,
                    event.get("id"),
                    spec.topic,
                    detail,
                )
                active.dropped += 1
                await self._dead_letter(active, event)
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
