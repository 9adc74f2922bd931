"""daprd's Prometheus metrics, kept per sidecar and rendered in the text exposition format.

daprd exports its OpenCensus views through the Prometheus exporter, so its counters keep their view
names (`dapr_http_server_request_count`, no `_total` added) and latencies are histograms in
milliseconds with daprd's bucket bounds. prometheus-client would append `_total` to every counter,
so the few series daprd has are counted here and rendered directly; several sidecars can live in one
process, each with its own `SidecarMetrics` and port.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

# daprd's defaultLatencyDistribution (pkg/diagnostics), milliseconds.
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200, 250, 300, 400,
    500, 650, 800, 1000, 2000, 5000, 10000, 20000, 50000, 100000,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class MetricDef:
    name: str
    kind: str  # "counter", "gauge" or "histogram"
    help: str
    labels: tuple[str, ...]


def _defs(*items: MetricDef) -> dict[str, MetricDef]:
    return {d.name: d for d in items}


# The series localdapr produces: daprd's names and label keys for the building blocks it implements.
METRICS = _defs(
    MetricDef(
        "dapr_http_server_request_count",
        "counter",
        "Number of HTTP requests started in server.",
        ("app_id", "method", "path"),
    ),
    MetricDef(
        "dapr_http_server_response_count",
        "counter",
        "Number of HTTP responses in server.",
        ("app_id", "method", "path", "status"),
    ),
    MetricDef(
        "dapr_http_server_latency",
        "histogram",
        "HTTP request end to end latency in server.",
        ("app_id", "method", "path", "status"),
    ),
    MetricDef(
        "dapr_grpc_io_server_completed_rpcs",
        "counter",
        "Count of RPCs by method and status.",
        ("app_id", "grpc_server_method", "grpc_server_status"),
    ),
    MetricDef(
        "dapr_grpc_io_server_server_latency",
        "histogram",
        "Distribution of server latency in milliseconds, by method.",
        ("app_id", "grpc_server_method", "grpc_server_status"),
    ),
    MetricDef(
        "dapr_runtime_service_invocation_req_sent_total",
        "counter",
        "The number of remote service invocation requests sent.",
        ("app_id", "destination_app_id"),
    ),
    MetricDef(
        "dapr_runtime_service_invocation_res_recv_total",
        "counter",
        "The number of remote service invocation responses received.",
        ("app_id", "destination_app_id", "status"),
    ),
    MetricDef(
        "dapr_component_state_count",
        "counter",
        "The number of operations performed on the state component.",
        ("app_id", "component", "namespace", "operation", "success"),
    ),
    MetricDef(
        "dapr_component_state_latencies",
        "histogram",
        "The latency of the response from the state component.",
        ("app_id", "component", "namespace", "operation", "success"),
    ),
    MetricDef(
        "dapr_component_pubsub_egress_count",
        "counter",
        "The number of outgoing messages published to the pub/sub component.",
        ("app_id", "component", "namespace", "success", "topic"),
    ),
    MetricDef(
        "dapr_component_pubsub_egress_latencies",
        "histogram",
        "The latency of the response from the pub/sub component.",
        ("app_id", "component", "namespace", "success", "topic"),
    ),
    MetricDef(
        "dapr_component_pubsub_ingress_count",
        "counter",
        "The number of incoming messages arriving from the pub/sub component.",
        ("app_id", "component", "namespace", "process_status", "status", "topic"),
    ),
    MetricDef(
        "dapr_component_pubsub_ingress_latencies",
        "histogram",
        "The consuming app event processing latency.",
        ("app_id", "component", "namespace", "process_status", "status", "topic"),
    ),
    MetricDef(
        "dapr_runtime_actor_activated_total",
        "counter",
        "The number of the actor activation.",
        ("app_id", "actor_type"),
    ),
    MetricDef(
        "dapr_runtime_actor_deactivated_total",
        "counter",
        "The number of the successful actor deactivation.",
        ("app_id", "actor_type"),
    ),
    MetricDef(
        "dapr_runtime_actor_pending_actor_calls",
        "gauge",
        "The number of pending actor calls waiting to acquire the per-actor lock.",
        ("app_id", "actor_type"),
    ),
)


@dataclass(slots=True)
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(LATENCY_BUCKETS_MS, value)] += 1
        self.total += value
        self.n += 1


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class SidecarMetrics:
    """One sidecar's series. Every call runs on the sidecar's event loop, so no lock is needed."""

    def __init__(self, app_id: str, namespace: str = "") -> None:
        self.app_id = app_id
        self.namespace = namespace
        self._values: dict[str, dict[tuple[str, ...], float | _Histogram]] = {n: {} for n in METRICS}

    def _key(self, name: str, labels: dict[str, str]) -> tuple[str, ...]:
        base = {"app_id": self.app_id, "namespace": self.namespace, **labels}
        return tuple(str(base[k]) for k in METRICS[name].labels)

    def add(self, name: str, labels: dict[str, str], amount: float = 1) -> None:
        series = self._values[name]
        key = self._key(name, labels)
        series[key] = float(series.get(key, 0.0)) + amount  # type: ignore[arg-type]

    def set(self, name: str, labels: dict[str, str], value: float) -> None:
        self._values[name][self._key(name, labels)] = value

    def observe(self, name: str, labels: dict[str, str], value_ms: float) -> None:
        series = self._values[name]
        key = self._key(name, labels)
        hist = series.get(key)
        if not isinstance(hist, _Histogram):
            hist = series[key] = _Histogram()
        hist.observe(value_ms)

    def value(self, name: str, **labels: str) -> float:
        """The sum of a counter or gauge over the series matching `labels` (for tests and tools)."""
        names = METRICS[name].labels
        total = 0.0
        for key, v in self._values[name].items():
            row = dict(zip(names, key, strict=True))
            if all(row.get(k) == want for k, want in labels.items()):
                total += v.n if isinstance(v, _Histogram) else v
        return total

    def render(self) -> str:
        lines: list[str] = []
        for name, d in METRICS.items():
            series = self._values[name]
            if not series:
                continue
            lines.append(f"# HELP {name} {d.help}")
            lines.append(f"# TYPE {name} {d.kind}")
            for key, v in sorted(series.items()):
                if isinstance(v, _Histogram):
                    cumulative = 0
                    for bound, count in zip((*LATENCY_BUCKETS_MS, math.inf), v.counts, strict=True):
                        cumulative += count
                        le = f'le="{_number(bound)}"'
                        lines.append(f"{name}_bucket{_labels(d.labels, key, le)} {cumulative}")
                    lines.append(f"{name}_sum{_labels(d.labels, key)} {_number(v.total)}")
                    lines.append(f"{name}_count{_labels(d.labels, key)} {v.n}")
                else:
                    lines.append(f"{name}{_labels(d.labels, key)} {_number(v)}")
        return "\n".join(lines) + "\n"
