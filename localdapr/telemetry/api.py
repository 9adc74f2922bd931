"""Where calls enter and leave a sidecar: the HTTP API middleware, the gRPC API interceptor, and
pub/sub delivery to the app. Each opens the call's span (a child of the caller's `traceparent`),
binds the sidecar's Telemetry and counts the call under daprd's metric names."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from aiohttp import web
from multidict import CIMultiDict
from opentelemetry.trace import SpanKind

from localdapr.telemetry import Telemetry, bind, elapsed_ms
from localdapr.telemetry.tracing import current_traceparent

# Health and metadata probes run every few seconds: counted, never traced (daprd does the same).
_UNTRACED = ("/v1.0/healthz", "/v1.0/metadata")
_INVOKE = "/v1.0/invoke/"


def _span_name(request: web.Request, route: str) -> str:
    info = request.match_info
    if route.startswith(_INVOKE):
        return f"CallLocal/{info.get('app_id')}/{info.get('method')}"
    if route.endswith("/method/{method}"):
        return f"CallActor/{info.get('actor_type')}/{info.get('method')}"
    if "/publish/" in route:
        return f"PublishEvent/{info.get('pubsub')}/{info.get('topic')}"
    return f"{request.method} {route}"


def http_middleware(telemetry: Telemetry) -> Any:
    """aiohttp middleware for the Dapr HTTP API; put it first so it sees every answer."""
    metrics = telemetry.metrics

    @web.middleware
    async def observe(request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
        bind(telemetry)
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        started = time.perf_counter()
        metrics.add("dapr_http_server_request_count", {"method": request.method, "path": route})
        status = 500
        try:
            if request.path.startswith(_UNTRACED):
                response = await handler(request)
            else:
                parent = request.headers.get("traceparent")
                with telemetry.tracer.span(_span_name(request, route), parent, path=request.path) as span:
                    # Hand the sidecar's span on: invocation and actor calls forward these headers.
                    headers = CIMultiDict(request.headers)
                    headers["traceparent"] = span.traceparent
                    response = await handler(request.clone(headers=headers))
                    if response.status >= 500:
                        span.fail(f"status {response.status}")
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            labels = {"method": request.method, "path": route, "status": str(status)}
            metrics.add("dapr_http_server_response_count", labels)
            metrics.observe("dapr_http_server_latency", labels, elapsed_ms(started))
            if route.startswith(_INVOKE):
                target = {"destination_app_id": request.match_info.get("app_id", "")}
                metrics.add("dapr_runtime_service_invocation_req_sent_total", target)
                metrics.add(
                    "dapr_runtime_service_invocation_res_recv_total", {**target, "status": str(status)}
                )

    return observe


class GrpcObserver(grpc.aio.ServerInterceptor):
    """gRPC API: a span per unary call under the `traceparent` metadata, and completed-RPC counts."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry

    async def intercept_service(self, continuation: Any, details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(details)
        if handler is None or handler.unary_unary is None:
            return handler  # streams (subscriptions) pass through untouched
        inner = handler.unary_unary
        method = details.method
        parent = dict(details.invocation_metadata or ()).get("traceparent")
        telemetry = self.telemetry

        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            bind(telemetry)
            started = time.perf_counter()
            failed = False
            try:
                with telemetry.tracer.span(method, parent) as span:
                    try:
                        return await inner(request, context)
                    except BaseException:
                        failed = True
                        span.fail("rpc failed")
                        raise
            finally:
                code = context.code()
                name = code.name if isinstance(code, grpc.StatusCode) else ("UNKNOWN" if failed else "OK")
                labels = {"grpc_server_method": method, "grpc_server_status": name}
                telemetry.metrics.add("dapr_grpc_io_server_completed_rpcs", labels)
                telemetry.metrics.observe("dapr_grpc_io_server_server_latency", labels, elapsed_ms(started))

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


async def deliver_observed(
    telemetry: Telemetry,
    deliver: Callable[[], Awaitable[tuple[str, str]]],
    component: str,
    topic: str,
    event: dict[str, Any],
) -> tuple[str, str]:
    """One delivery attempt to the subscriber, in a span under the CloudEvent's `traceparent` (the
    sinks send that span's header: see delivery_trace_headers), counted as daprd's pub/sub ingress."""
    bind(telemetry)
    started = time.perf_counter()
    parent = event.get("traceparent")
    with telemetry.tracer.span(f"pubsub/{topic}", str(parent) if parent else None, SpanKind.CONSUMER) as span:
        outcome, detail = await deliver()
        if outcome != "SUCCESS":
            span.fail(detail)
    telemetry.delivered(component, topic, outcome, started)
    return outcome, detail


def delivery_trace_headers(event: dict[str, Any]) -> list[tuple[str, str]]:
    """The trace headers a subscriber gets: the delivery span's traceparent, the event's tracestate."""
    out: list[tuple[str, str]] = []
    traceparent = current_traceparent() or event.get("traceparent")
    if traceparent:
        out.append(("traceparent", str(traceparent)))
    if event.get("tracestate"):
        out.append(("tracestate", str(event["tracestate"])))
    return out
