"""In-process hand-over between sidecars of one localdapr process: actor calls and service invocation.

A call for an actor another sidecar owns, or a service invocation, goes to the other sidecar's HTTP
port (actors/routing.py, invocation/internal.py). When that sidecar runs in this very process (`vigil
up` runs every sidecar on one loop; tests and benchmarks run them on threads of one process), the call
is handed to it in memory instead: no HTTP request to build, send, parse and answer, and the body (a
batch of readings, a prediction request) is passed on as the same bytes. The other sidecar runs it as
it runs the HTTP request: in its own loop, under a span of its own tracer (child of the caller's
traceparent), counted under the same HTTP server metrics, with its access control, and an error
answered as its HTTP route would answer it. Only a sidecar of the same run (one trust key) is handed
calls. Sidecars in other processes, and daprd, are still reached over HTTP; nothing the SDK or an app
sees changes.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from multidict import CIMultiDict

from localdapr.actors.errors import ActorReply
from localdapr.appchannel import AppResponse, MethodCall
from localdapr.errors import DaprError
from localdapr.invocation.internal import PATH, AppUnreachable, Callee, denied
from localdapr.telemetry import Telemetry, bind, elapsed_ms, unbind
from localdapr.telemetry.tracing import SpanHandle
from localdapr.trust import SidecarTrust

if TYPE_CHECKING:
    from localdapr.actors.routing import Router

T = TypeVar("T")
_ACTOR_ROUTE = "/v1.0/actors/{actor_type}/{actor_id}/method/{method}"
_INVOKE_ROUTE = f"{PATH}{{method}}"


class HostStopped(ConnectionError):
    """The other sidecar stopped before answering: the caller retries as for a closed connection."""


class InProcessSidecar:
    """One sidecar of this process, as the target of calls handed over in memory."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        telemetry: Telemetry,
        trust: SidecarTrust,
        router: Router | None = None,
        callee: Callee | None = None,
    ) -> None:
        self.loop = loop
        self.telemetry = telemetry
        self.trust = trust
        self.router = router
        self.callee = callee
        self.closed = False
        # Callers on other loops waiting for an answer: failed when this sidecar goes away, as an HTTP
        # caller's connection would be closed.
        self._waiting: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[object]]] = set()
        self._lock = threading.Lock()

    def trusts(self, caller: SidecarTrust) -> bool:
        """Whether this sidecar takes calls signed by `caller` (a sidecar of the same run), as its HTTP
        API checks a forwarded call."""
        return self.trust.caller(caller.headers) is not None

    # ------------------------------------------------------------------ actor calls
    async def call_actor(
        self, actor_type: str, actor_id: str, method: str, body: bytes, headers: CIMultiDict[str]
    ) -> ActorReply:
        """What this sidecar's HTTP API answers to a forwarded actor call (`headers` as forwarded)."""
        router = self.router
        if router is None:
            raise HostStopped("no actor runtime")

        async def serve() -> ActorReply:
            path = f"/v1.0/actors/{actor_type}/{actor_id}/method/{method}"
            span_name = f"CallActor/{actor_type}/{method}"
            with _Observed(self.telemetry, span_name, _ACTOR_ROUTE, path, headers) as observed:
                try:
                    reply = await router.invoke(actor_type, actor_id, method, body, observed.headers)
                except DaprError as err:
                    reply = ActorReply.error(err)
                observed.status = reply.status
            return reply

        return await self._run(serve)

    # ------------------------------------------------------------------ service invocation
    async def invoke(self, call: MethodCall, caller: SidecarTrust, timeout: float | None) -> AppResponse:
        """What this sidecar's internal invocation route does with `call` from `caller`; raises as
        `internal.forward` does (DaprError for a denial, AppUnreachable, TimeoutError)."""
        callee = self.callee
        if callee is None:
            raise HostStopped("no app channel")

        async def serve() -> AppResponse:
            path = f"{PATH}{call.method}"
            error: DaprError | None = None
            result: AppResponse | None = None
            with _Observed(
                self.telemetry, f"POST {_INVOKE_ROUTE}", _INVOKE_ROUTE, path, call.headers
            ) as observed:
                message = callee.denial(caller.identity, call.method, call.verb)
                if message is not None:
                    error = denied(callee.app_id, message)
                else:
                    app_call = MethodCall(
                        method=call.method,
                        verb=call.verb,
                        query=call.query,
                        headers=Callee.app_headers(observed.headers, caller.identity),
                        data=call.data,
                        content_type=call.content_type,
                        type_url=call.type_url,
                    )
                    try:
                        result = await callee.invoke(app_call)
                    except DaprError as err:
                        error = err
                    except AppUnreachable:
                        observed.status = 502  # the internal route's answer for it
                        raise
                # the status the internal route answers with
                if message is not None:
                    observed.status = 403
                elif error is not None:
                    observed.status = error.http_status
                elif result is not None:
                    observed.status = 200 if result.grpc is not None else result.status
            if error is not None:
                raise error  # as internal.forward raises it on the caller's side
            assert result is not None
            return result

        return await asyncio.wait_for(self._run(serve), timeout)

    # ------------------------------------------------------------------ running in the sidecar's loop
    async def _run(self, serve: Callable[[], Awaitable[T]]) -> T:
        """`serve()` in this sidecar's loop (awaited at once when it is the caller's)."""
        if self.closed or not self.loop.is_running():
            raise HostStopped("sidecar stopped")
        caller = asyncio.get_running_loop()
        if caller is self.loop:
            return await serve()
        answer: asyncio.Future[object] = caller.create_future()
        waiting = (caller, answer)
        with self._lock:
            if self.closed:
                raise HostStopped("sidecar stopped")
            self._waiting.add(waiting)

        async def run() -> None:
            try:
                result = await serve()
            except Exception as exc:  # raised again in the caller's loop
                _settle_threadsafe(caller, answer, exc=exc)
            except BaseException:  # cancelled: this sidecar's loop is going away
                _settle_threadsafe(caller, answer, exc=HostStopped("sidecar stopped"))
                raise
            else:
                _settle_threadsafe(caller, answer, result)

        try:
            asyncio.run_coroutine_threadsafe(run(), self.loop)
            return await answer  # type: ignore[return-value]
        finally:
            with self._lock:
                self._waiting.discard(waiting)

    def close(self) -> None:
        with self._lock:
            self.closed = True
            waiting, self._waiting = self._waiting, set()
        for caller, answer in waiting:
            _settle_threadsafe(caller, answer, exc=HostStopped("sidecar stopped"))


class _Observed:
    """The HTTP API middleware's work for a handed-over call: bind this sidecar's telemetry, open its
    span under the caller's traceparent and hand it on in `headers` (a copy), count the request and
    its answer (`status`, set by the caller before leaving)."""

    def __init__(
        self, telemetry: Telemetry, span: str, route: str, path: str, headers: CIMultiDict[str]
    ) -> None:
        self.telemetry = telemetry
        self.route = route
        self.headers = CIMultiDict(headers)
        self.status = 500
        self._started = time.perf_counter()
        self._span: AbstractContextManager[SpanHandle] = telemetry.tracer.span(
            span, self.headers.get("traceparent"), path=path
        )
        self._handle: SpanHandle | None = None
        self._bound: Any = None

    def __enter__(self) -> _Observed:
        self._bound = bind(self.telemetry)
        self.telemetry.metrics.add("dapr_http_server_request_count", {"method": "POST", "path": self.route})
        self._handle = self._span.__enter__()
        self.headers["traceparent"] = self._handle.traceparent
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handle is not None and self.status >= 500:
            self._handle.fail(f"status {self.status}")
        self._span.__exit__(kind, exc, tb)
        labels = {"method": "POST", "path": self.route, "status": str(self.status)}
        self.telemetry.metrics.add("dapr_http_server_response_count", labels)
        self.telemetry.metrics.observe("dapr_http_server_latency", labels, elapsed_ms(self._started))
        unbind(self._bound)


def _settle_threadsafe(
    loop: asyncio.AbstractEventLoop,
    answer: asyncio.Future[object],
    result: object = None,
    exc: BaseException | None = None,
) -> None:
    def settle() -> None:
        if answer.done():
            return
        if exc is not None:
            answer.set_exception(exc)
        else:
            answer.set_result(result)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:
        pass  # the caller's loop is closed: nobody waits any more


_SIDECARS: dict[str, InProcessSidecar] = {}
_SIDECARS_LOCK = threading.Lock()


def enabled() -> bool:
    """LOCALDAPR_IN_PROCESS=0 keeps every sidecar-to-sidecar call on HTTP (to compare, or to debug)."""
    return os.environ.get("LOCALDAPR_IN_PROCESS", "1") != "0"


def register(instance_id: str, sidecar: InProcessSidecar) -> None:
    if not enabled():
        return
    with _SIDECARS_LOCK:
        _SIDECARS[instance_id] = sidecar


def unregister(instance_id: str) -> None:
    with _SIDECARS_LOCK:
        sidecar = _SIDECARS.pop(instance_id, None)
    if sidecar is not None:
        sidecar.close()


def find(instance_id: str) -> InProcessSidecar | None:
    return _SIDECARS.get(instance_id)
