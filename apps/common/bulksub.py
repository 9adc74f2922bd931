"""Bulk pub/sub deliveries (Dapr's `bulkSubscribe`) on the app side.

A subscription that declares `bulkSubscribe` gets, instead of one CloudEvent per POST, daprd's bulk
envelope `{"id", "type": "com.dapr.event.sent.bulk", "topic", "pubsubname", "metadata", "entries":
[{"entryId", "event", "contentType", "metadata"}]}` (content type application/json), and answers
`{"statuses": [{"entryId", "status": "SUCCESS" | "RETRY" | "DROP"}]}`: an entry not answered, or any
other status, is retried. The SDK's DaprApp cannot declare `bulkSubscribe`, hence `BulkDaprApp`; a
handler behind such a subscription still takes single CloudEvents too (a sidecar without bulk
support, or a test posting one), so `bulk_entries` tells the two shapes apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from dapr.ext.fastapi import DaprApp
from fastapi import FastAPI

from apps.common.httpguard import loads_orjson_first

BULK_EVENT_TYPE = "com.dapr.event.sent.bulk"
CLOUDEVENT_CONTENT_TYPE = "application/cloudevents+json"


@dataclass(frozen=True, slots=True)
class BulkEntry:
    entry_id: str
    event: Any  # the CloudEvent as a JSON object (or, for a raw payload, its base64 text)


def bulk_entries(body: bytes, content_type: str) -> list[BulkEntry] | None:
    """The entries of a bulk delivery; None when `body` is not one (a single CloudEvent, which the
    sidecar sends as application/cloudevents+json, or something the single handler will refuse)."""
    if content_type.lower().startswith(CLOUDEVENT_CONTENT_TYPE):
        return None
    try:
        # orjson where it gives json's reading (a third of json's CPU on a delivery's entries), else json.
        parsed = loads_orjson_first(body, json.loads)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(parsed, dict) or parsed.get("type") != BULK_EVENT_TYPE:
        return None
    entries = parsed.get("entries")
    if not isinstance(entries, list):
        return None
    out: list[BulkEntry] = []
    for entry in entries:
        # An entry without an id cannot be answered: the sidecar retries it as unanswered.
        if isinstance(entry, dict) and isinstance(entry.get("entryId"), str):
            out.append(BulkEntry(entry["entryId"], entry.get("event")))
    return out


def bulk_answer(statuses: Sequence[tuple[str, str]]) -> dict[str, list[dict[str, str]]]:
    """The app's answer to a bulk delivery: (entry id, SUCCESS | RETRY | DROP) per entry."""
    return {"statuses": [{"entryId": entry_id, "status": status} for entry_id, status in statuses]}


def bulk_subscription(
    pubsub: str, topic: str, route: str, max_messages: int, max_await_ms: int
) -> dict[str, object]:
    """One GET /dapr/subscribe entry with bulkSubscribe (contract: daprd reads it as such)."""
    return {
        "pubsubname": pubsub,
        "topic": topic,
        "route": route,
        "metadata": {},
        "bulkSubscribe": {
            "enabled": True,
            "maxMessagesCount": max_messages,
            "maxAwaitDurationMs": max_await_ms,
        },
    }


class BulkDaprApp(DaprApp):
    """DaprApp that can also declare bulk subscriptions on GET /dapr/subscribe."""

    def __init__(self, app_instance: FastAPI) -> None:
        super().__init__(app_instance)
        self._bulk: list[tuple[str, str, str, Callable[[], tuple[int, int]]]] = []

    def bulk_subscribe(
        self, pubsub: str, topic: str, limits: Callable[[], tuple[int, int]], route: str | None = None
    ) -> Callable[[Callable[..., Any]], None]:
        """As `subscribe`, with `bulkSubscribe` enabled: the handler gets bulk envelopes (or single
        events). `limits()` -> (maxMessagesCount, maxAwaitDurationMs), read when the sidecar asks, so
        they come from the app's settings, not from import time."""

        def decorator(func: Callable[..., Any]) -> None:
            path = route or f"/events/{pubsub}/{topic}"
            self._app.add_api_route(path, func, methods=["POST"], tags=self._router_tags)
            self._bulk.append((pubsub, topic, path, limits))

        return decorator

    def _get_subscriptions(self) -> list[dict[str, object]]:
        bulk = [bulk_subscription(p, t, path, *limits()) for p, t, path, limits in self._bulk]
        return [*super()._get_subscriptions(), *bulk]
