"""Delivering broker messages to the app as CloudEvents, and reading the app's answer (contract 4.3/4.4).

For each subscription (programmatic from `GET /dapr/subscribe`, or declarative files) the sidecar
subscribes to the broker with the app id as consumer group, routes each event (rules, then default),
POSTs it to the app with `application/cloudevents+json`, and interprets the answer:
SUCCESS -> ack; DROP or 404 -> dropped (to the dead-letter topic when one is set); RETRY, any other
status or an unreachable app -> retried under the inbound resiliency policy, then dead-lettered if a
dead-letter topic is set, else handed back to the broker (which redelivers: at-least-once).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from localdapr.appchannel import AppChannel
from localdapr.components.spec import SubscriptionSpec
from localdapr.errors import ComponentError
from localdapr.pubsub.base import BrokerMessage, NotProcessed
from localdapr.pubsub.cloudevents import CLOUDEVENT_CONTENT_TYPE, expired, is_raw, wrap_raw
from localdapr.pubsub.routing import Rule, RuleError
from localdapr.resiliency import Resiliency
from localdapr.runtime import DaprRuntime

log = logging.getLogger("localdapr.pubsub")

SUCCESS, RETRY, DROP = "SUCCESS", "RETRY", "DROP"


def outcome_of(status: int, body: bytes) -> str:
    """The app's answer to a delivery, as daprd reads it."""
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
    channel: AppChannel
    resiliency: Resiliency
    active: list[ActiveSubscription] = field(default_factory=list)

    async def fetch_programmatic(self) -> list[SubscriptionSpec]:
        try:
            resp = await self.channel.request(
                "GET", "/dapr/subscribe", headers={"dapr-app-id": self.runtime.app_id}, timeout=10
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("[%s] GET /dapr/subscribe failed: %s", self.runtime.app_id, exc)
            return []
        if resp.status == 404 or not 200 <= resp.status < 300:
            return []
        try:
            entries = resp.json() or []
        except ValueError:
            log.warning("[%s] /dapr/subscribe did not answer JSON; no subscriptions", self.runtime.app_id)
            return []
        specs: list[SubscriptionSpec] = []
        for entry in entries:
            routes = entry.get("routes") or {}
            default = routes.get("default") or entry.get("route")
            rules = routes.get("rules") or []
            if not default and not rules:
                log.warning("[%s] subscription to %s has no route; ignored", self.runtime.app_id, entry)
                continue
            from localdapr.components.spec import RouteRule

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

    async def start(self, declarative: list[SubscriptionSpec]) -> None:
        specs = await self.fetch_programmatic()
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
        body = json.dumps(event).encode()
        headers = {"content-type": CLOUDEVENT_CONTENT_TYPE, "pubsubName": spec.pubsub_name}
        for key in ("traceparent", "tracestate"):
            if event.get(key):
                headers[key] = str(event[key])
        while True:
            try:
                resp = await self.channel.request(
                    "POST", route, body=body, headers=headers, timeout=policy.timeout or 60
                )
                outcome = outcome_of(resp.status, resp.body)
                detail = f"status {resp.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                outcome, detail = RETRY, f"app unreachable: {exc}"
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
