"""A span collector for tests: a tiny HTTP server taking OTLP/HTTP (protobuf, POST /v1/traces) and
Zipkin v2 JSON (POST /api/v2/spans), keeping every span it receives."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: str
    attributes: dict[str, Any]


def _otlp_spans(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest.FromString(body)
    out: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
        for scope in resource_spans.scope_spans:
            for span in scope.spans:
                out.append(
                    ReceivedSpan(
                        service=attrs.get("service.name", ""),
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        kind=str(span.kind),
                        attributes={a.key: a.value.string_value for a in span.attributes},
                    )
                )
    return out


def _zipkin_spans(body: bytes) -> list[ReceivedSpan]:
    return [
        ReceivedSpan(
            service=(s.get("localEndpoint") or {}).get("serviceName", ""),
            name=s.get("name", ""),
            trace_id=s.get("traceId", ""),
            span_id=s.get("id", ""),
            parent_id=s.get("parentId", ""),
            kind=s.get("kind", ""),
            attributes=s.get("tags") or {},
        )
        for s in json.loads(body)
    ]


class SpanReceiver:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.path.startswith("/v1/traces"):
                    spans, reply = _otlp_spans(body), ExportTraceServiceResponse().SerializeToString()
                    content_type = "application/x-protobuf"
                elif self.path.startswith("/api/v2/spans"):
                    spans, reply, content_type = _zipkin_spans(body), b"", "application/json"
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                with receiver._lock:
                    receiver.spans += spans
                self.send_response(200 if reply else 202)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> SpanReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def of_trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]


def tracing_config(folder: Any, endpoint: str, exporter: str = "otel", rate: str = "1") -> Any:
    """A Configuration file with spec.tracing pointing at `endpoint`, written into `folder`."""
    if exporter == "otel":
        section = (
            f'    otel:\n      endpointAddress: "{endpoint}"\n      isSecure: false\n      protocol: http\n'
        )
    else:
        section = f'    zipkin:\n      endpointAddress: "{endpoint}"\n'
    path = folder / f"tracing-{exporter}.yaml"
    path.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: tracing\nspec:\n"
        f'  tracing:\n    samplingRate: "{rate}"\n{section}'
    )
    return path
