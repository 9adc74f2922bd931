"""Tracing as daprd does it: W3C trace context on every API call, spans exported with OpenTelemetry.

The Configuration's `spec.tracing` decides: `samplingRate` ("0" or absent: nothing is recorded) and one
endpoint, `otel` (`endpointAddress`, `protocol: http`, `isSecure`) or `zipkin` (`endpointAddress`, the
v2 JSON API). With no endpoint nothing is exported either, but the trace context is still carried:
each span the sidecar opens gets a new span id under the caller's trace id, and that child
`traceparent` is what the sidecar hands on (to the callee app, the actor host, the CloudEvent).

Sampling is decided by the trace id alone (TraceIdRatioBased), so every sidecar keeps or drops the
same traces whatever flag an app put on the header.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from localdapr.errors import ComponentError

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_PROPAGATOR = TraceContextTextMapPropagator()

# The traceparent of the span this sidecar has open for the call being served (None outside one).
CURRENT_TRACEPARENT: ContextVar[str | None] = ContextVar("localdapr_traceparent", default=None)


def parse_traceparent(value: str | None) -> tuple[str, str, str] | None:
    """(trace id, parent id, flags) of a valid W3C version-00 header, else None."""
    match = _TRACEPARENT.match((value or "").strip().lower())
    if match is None or match.group(1) == "0" * 32 or match.group(2) == "0" * 16:
        return None
    return match.group(1), match.group(2), match.group(3)


def new_traceparent(parent: str | None = None, sampled: bool = True) -> str:
    """A new span id under `parent`'s trace (or a new trace), as a traceparent header."""
    parsed = parse_traceparent(parent)
    trace_id = parsed[0] if parsed else os.urandom(16).hex()
    flags = parsed[2] if parsed else ("01" if sampled else "00")
    return f"00-{trace_id}-{os.urandom(8).hex()}-{flags}"


def current_traceparent() -> str | None:
    return CURRENT_TRACEPARENT.get()


@dataclass(frozen=True, slots=True)
class TracingConfig:
    sampling_rate: float = 0.0
    otel_endpoint: str = ""
    otel_protocol: str = "http"
    otel_secure: bool = False
    zipkin_endpoint: str = ""

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | None, source: str = "configuration") -> TracingConfig:
        spec = spec or {}
        if not isinstance(spec, dict):
            raise ComponentError(f"{source}: spec.tracing must be a mapping")
        raw_rate = spec.get("samplingRate", "0")
        try:
            rate = float(str(raw_rate or "0"))
        except ValueError as exc:
            raise ComponentError(
                f"{source}: tracing.samplingRate must be a number, got {raw_rate!r}"
            ) from exc
        if not 0 <= rate <= 1:
            raise ComponentError(f"{source}: tracing.samplingRate must be between 0 and 1, got {raw_rate!r}")
        otel = spec.get("otel") or {}
        zipkin = spec.get("zipkin") or {}
        protocol = str(otel.get("protocol") or "http").lower()
        if otel.get("endpointAddress") and protocol != "http":
            raise ComponentError(
                f"{source}: tracing.otel.protocol {protocol!r} is not supported by localdapr (use http: "
                "OTLP over HTTP, a collector's port 4318)"
            )
        return cls(
            sampling_rate=rate,
            otel_endpoint=str(otel.get("endpointAddress") or ""),
            otel_protocol=protocol,
            otel_secure=str(otel.get("isSecure", "false")).lower() in ("true", "1"),
            zipkin_endpoint=str(zipkin.get("endpointAddress") or ""),
        )

    @property
    def exporting(self) -> bool:
        return self.sampling_rate > 0 and bool(self.otel_endpoint or self.zipkin_endpoint)


def _otlp_url(address: str, secure: bool) -> str:
    """daprd takes `host:port` for OTLP; a full URL is accepted too. The traces path is OTLP/HTTP's."""
    if "://" not in address:
        address = f"{'https' if secure else 'http'}://{address}"
    return address if address.rstrip("/").endswith("/v1/traces") else address.rstrip("/") + "/v1/traces"


def _exporter(config: TracingConfig) -> SpanExporter:
    if config.otel_endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=_otlp_url(config.otel_endpoint, config.otel_secure), timeout=5)
    from opentelemetry.exporter.zipkin.json import ZipkinExporter

    return ZipkinExporter(endpoint=config.zipkin_endpoint, timeout=5)


class SpanHandle:
    """The span a call runs in: its traceparent to hand on, and a way to mark it failed."""

    def __init__(self, traceparent: str, span: trace.Span | None = None) -> None:
        self.traceparent = traceparent
        self._span = span

    def set_attribute(self, key: str, value: str | int) -> None:
        if self._span is not None:
            self._span.set_attribute(key, value)

    def fail(self, description: str) -> None:
        if self._span is not None:
            self._span.set_status(Status(StatusCode.ERROR, description))


class SidecarTracer:
    def __init__(self, app_id: str, config: TracingConfig) -> None:
        self.config = config
        self._provider: TracerProvider | None = None
        self._tracer: trace.Tracer | None = None
        if config.exporting:
            # A provider per sidecar (not the global one): several sidecars share a process, each
            # reporting under its own app id as service.name, as daprd does.
            self._provider = TracerProvider(
                resource=Resource.create({"service.name": app_id}),
                sampler=TraceIdRatioBased(config.sampling_rate),
            )
            self._provider.add_span_processor(
                BatchSpanProcessor(_exporter(config), schedule_delay_millis=500)
            )
            self._tracer = self._provider.get_tracer("localdapr")

    @contextmanager
    def span(
        self, name: str, parent: str | None, kind: SpanKind = SpanKind.SERVER, **attributes: str | int
    ) -> Iterator[SpanHandle]:
        """Open a span under `parent` (a traceparent header, or None for a new trace); while it is
        open, current_traceparent() is its header."""
        if self._tracer is None:
            handle = SpanHandle(new_traceparent(parent, sampled=self.config.sampling_rate > 0))
            token = CURRENT_TRACEPARENT.set(handle.traceparent)
            try:
                yield handle
            finally:
                CURRENT_TRACEPARENT.reset(token)
            return
        context = _PROPAGATOR.extract({"traceparent": parent}) if parse_traceparent(parent) else Context()
        with self._tracer.start_as_current_span(
            name, context=context, kind=kind, attributes=attributes or None, record_exception=False
        ) as span:
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier, trace.set_span_in_context(span))
            handle = SpanHandle(carrier.get("traceparent") or new_traceparent(parent), span)
            token = CURRENT_TRACEPARENT.set(handle.traceparent)
            try:
                yield handle
            except BaseException as exc:
                handle.fail(type(exc).__name__)
                raise
            finally:
                CURRENT_TRACEPARENT.reset(token)

    def flush(self) -> None:
        if self._provider is not None:
            self._provider.force_flush(5000)

    def shutdown(self) -> None:
        if self._provider is not None:
            self._provider.shutdown()
            self._provider = None
            self._tracer = None
