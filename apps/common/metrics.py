"""Every app's Prometheus metrics, defined once (names `vigil_...`), and `instrument(app)`, which
mounts GET /metrics and counts HTTP requests by route and status.

The services call the small `record_*` helpers below from their service layer, next to the domain
calls (the domain stays free of metrics); actor calls are measured where the SDK makes them
(apps/common/daprhttp.py). `instrument` also carries the request's W3C trace context
(apps/common/tracecontext.py) for the Dapr calls made while serving it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apps.common import tracecontext

disable_created_metrics()  # no *_created sample beside every counter: Prometheus does not need them
HTTP_REQUESTS = Counter(
    "vigil_http_requests",
    "HTTP requests served, by route template and status.",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "vigil_http_request_duration_seconds", "Time to answer an HTTP request.", ["method", "route"]
)
READINGS_ACCEPTED = Counter("vigil_readings_accepted", "Readings the equipment actors applied.")
READINGS_DUPLICATE = Counter("vigil_readings_duplicate", "Readings the actors had already applied.")
READINGS_REJECTED = Counter("vigil_readings_rejected", "Readings refused, by reason.", ["reason"])
ACTOR_CALLS = Counter(
    "vigil_actor_calls", "Dapr actor method calls made, by outcome.", ["actor_type", "method", "outcome"]
)
ACTOR_LATENCY = Histogram(
    "vigil_actor_call_duration_seconds", "Time for a Dapr actor method call.", ["actor_type", "method"]
)
PREDICTIONS = Counter("vigil_predictions", "Rows predicted, by model and version.", ["model", "version"])
MODEL_SERVING = Gauge("vigil_model_version_serving", "The model version inference serves.", ["model"])
MODEL_REFUSED = Counter(
    "vigil_model_records_refused",
    "Registry records inference refused to serve: a champion pointer or version whose signature does "
    "not verify (each distinct refusal once).",
    ["model"],
)
ALERTS = Counter(
    "vigil_alert_changes", "Alert changes recorded by alerting, by new state.", ["kind", "state"]
)
NOTIFICATION_FAILURES = Counter(
    "vigil_notification_failures", "Failed attempts to send an alert notification.", ["reason"]
)

# Rejection texts are sentences naming values; the label is their kind, a small fixed set.
_REJECTION_KINDS = (
    ("not applied, retry", "actor_unavailable"),
    ("applied but not archived", "not_archived"),
    ("too_late", "too_late"),
    ("too_far", "too_far"),
    ("outside the plausible range", "out_of_range"),
    ("unknown sensor", "unknown_sensor"),
    ("missing sensor", "missing_sensor"),
    ("in the future", "future_timestamp"),
    ("unknown equipment profile", "unknown_profile"),
)


def rejection_kind(reason: str) -> str:
    for text, kind in _REJECTION_KINDS:
        if text in reason:
            return kind
    return "invalid"


CLOCK_AHEAD = Counter(
    "vigil_sender_clock_ahead",
    "Messages whose times ran ahead of the receiver's clock by more than the allowed skew (taken as "
    "received), by topic.",
    ["topic"],
)


def record_clock_ahead(topic: str) -> None:
    CLOCK_AHEAD.labels(topic=topic).inc()


def record_ingest(accepted: int, duplicates: int, rejection_reasons: Iterable[str]) -> None:
    READINGS_ACCEPTED.inc(accepted)
    READINGS_DUPLICATE.inc(duplicates)
    for reason in rejection_reasons:
        READINGS_REJECTED.labels(rejection_kind(reason)).inc()


def record_actor_call(actor_type: str, method: str, ok: bool, started: float) -> None:
    ACTOR_CALLS.labels(actor_type, method, "ok" if ok else "error").inc()
    ACTOR_LATENCY.labels(actor_type, method).observe(time.perf_counter() - started)


def record_predictions(model: str, version: int, rows: int) -> None:
    PREDICTIONS.labels(model, str(version)).inc(rows)


def record_serving(model: str, version: int) -> None:
    MODEL_SERVING.labels(model).set(version)


def record_model_refused(model: str) -> None:
    MODEL_REFUSED.labels(model).inc()


def record_alert_change(kind: str, state: str) -> None:
    ALERTS.labels(kind, state).inc()


_WORD = re.compile(r"[^a-z0-9_]+")


def record_notification_failure(reason: str) -> None:
    """`reason`: a short kind (an HTTP status, `timeout`, `unreachable`...), not a message."""
    NOTIFICATION_FAILURES.labels(_WORD.sub("_", reason.lower())[:40] or "error").inc()


# ---------------------------------------------------------------------- HTTP
async def _scrape(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def _route_of(scope: Scope) -> str:
    """The matched route's template (`/v1/alerts/{alert_id}`), so ids do not become label values."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"


class _Observe:
    """Pure ASGI middleware: trace context for the request, then its count and duration."""

    def __init__(self, app: ASGIApp, edge: bool) -> None:
        self.app = app
        self.edge = edge

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope.get("headers", ()) if k == b"traceparent"), None)
        token = tracecontext.TRACEPARENT.set(
            tracecontext.incoming(header.decode("latin-1") if header else None, self.edge)
        )
        status = 500
        started = time.perf_counter()

        async def observe_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe_send)
        finally:
            tracecontext.TRACEPARENT.reset(token)
            route, method = _route_of(scope), scope.get("method", "")
            if route != "/metrics":
                HTTP_REQUESTS.labels(method, route, str(status)).inc()
                HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - started)


def instrument(app: Any, edge: bool = False) -> None:
    """GET /metrics on `app` and its requests counted; `edge`: requests without a `traceparent` start
    a trace (ingestion and the gateway, where readings and clients come in). Add it last: outermost."""
    app.add_route("/metrics", _scrape, methods=["GET"], include_in_schema=False)
    app.add_middleware(_Observe, edge=edge)
