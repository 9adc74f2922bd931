"""W3C trace context through the apps: the `traceparent` a request came with is handed on, unchanged,
on every Dapr call made while serving it, so the sidecars (which open and export the spans, as the
Configuration's `tracing` says) join one trace from the edge to the last subscriber.

The one place: `metrics.instrument` reads the header of each incoming request into `TRACEPARENT`
(creating one at the edge: ingestion and the gateway), `trace_headers()` is added by the pooled HTTP
client (apps/common/daprhttp.py: invocation, actor calls, actor state), and `dapr_client()`'s gRPC
interceptor adds it to the SDK's gRPC calls (publish).
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from typing import Any

import grpc
from dapr.aio.clients import DaprClient

_VALID = re.compile(r"^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$")

TRACEPARENT: ContextVar[str | None] = ContextVar("vigil_traceparent", default=None)


def new_traceparent() -> str:
    """A new trace, flagged sampled: the sidecars decide by the trace id whether it is recorded."""
    return f"00-{os.urandom(16).hex()}-{os.urandom(8).hex()}-01"


def valid(value: str | None) -> bool:
    return bool(value) and _VALID.match(str(value)) is not None


def incoming(value: str | None, edge: bool) -> str | None:
    """The trace context to serve a request in: its own header when valid; at the edge a new one."""
    if valid(value):
        return value
    return new_traceparent() if edge else None


def current_trace_id() -> str | None:
    value = TRACEPARENT.get()
    return value.split("-")[1] if value else None


def trace_headers() -> dict[str, str]:
    value = TRACEPARENT.get()
    return {"traceparent": value} if value else {}


class _TraceparentInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        value = TRACEPARENT.get()
        if value:
            metadata = [*(details.metadata or ()), ("traceparent", value)]
            details = grpc.aio.ClientCallDetails(
                details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
            )
        return await continuation(details, request)


def dapr_client() -> DaprClient:
    """The SDK's DaprClient, its gRPC calls carrying the request's traceparent."""
    return DaprClient(interceptors=[_TraceparentInterceptor()])
