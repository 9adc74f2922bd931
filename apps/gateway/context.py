"""A request id on every answer and every log line, and the W3C trace context sent on through Dapr.

Each request gets an id: the caller's `X-Request-ID` when it is a sane token (so a client can correlate
its own logs), else a new one. The trace: a valid incoming `traceparent` is continued (its trace id
kept, a new span id for the gateway's hop), otherwise a new trace starts. The gateway passes its
`traceparent` on every Dapr call, so the sidecars and apps behind it log the same trace, and answers
with both headers. Every log line of the gateway process carries the request id (`RequestIdFilter`).
"""

from __future__ import annotations

import contextvars
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Final

from apps.common.asgi import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER: Final = "x-request-id"
MAX_LOGGED_PATH: Final = 256
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_TRACEPARENT = re.compile(r"^00-(?P<trace>[0-9a-f]{32})-(?P<span>[0-9a-f]{16})-(?P<flags>[0-9a-f]{2})$")
log = logging.getLogger("gateway.access")


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str
    trace_id: str
    span_id: str
    flags: str = "01"

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"


_current: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar("request", default=None)


def current() -> RequestContext | None:
    return _current.get()


def context_for(request_id: str | None, traceparent: str | None) -> RequestContext:
    """The context of a request given its incoming headers (either may be absent or hostile)."""
    trace = _TRACEPARENT.match(traceparent or "")
    valid_trace = trace is not None and set(trace["trace"]) != {"0"} and set(trace["span"]) != {"0"}
    trace_id = trace["trace"] if trace and valid_trace else secrets.token_hex(16)
    flags = trace["flags"] if trace and valid_trace else "01"
    rid = request_id if request_id and _REQUEST_ID.match(request_id) else trace_id
    return RequestContext(rid, trace_id, secrets.token_hex(8), flags)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record ('-' outside a request), for the log format to show."""

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = _current.get()
        record.request_id = ctx.request_id if ctx else "-"
        return True


class RequestContextMiddleware:
    """Outermost middleware: sets the context, stamps the answer, logs one access line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        ctx = context_for(headers.get(REQUEST_ID_HEADER), headers.get("traceparent"))
        token = _current.set(ctx)
        started = time.perf_counter()
        status = 0

        async def stamped(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                extra = [
                    (b"x-request-id", ctx.request_id.encode()),
                    (b"traceparent", ctx.traceparent.encode()),
                ]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, stamped)
        finally:
            log.info(
                "%s %r %d %.1f ms",
                scope["method"],
                str(scope.get("path", ""))[:MAX_LOGGED_PATH],  # a 10 kB id is not a 10 kB log line
                status,
                (time.perf_counter() - started) * 1000,
            )
            _current.reset(token)
