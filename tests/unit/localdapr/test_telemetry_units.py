"""localdapr telemetry without a sidecar: the metrics exposition (daprd's names), the Configuration's
tracing section, W3C traceparent handling, and the daprd-style --enable-metrics flag."""

from __future__ import annotations

import argparse

import pytest

from localdapr.errors import ComponentError
from localdapr.launch.cli import _flag, build_parser
from localdapr.telemetry import Telemetry
from localdapr.telemetry.metrics import LATENCY_BUCKETS_MS, SidecarMetrics
from localdapr.telemetry.tracing import (
    SidecarTracer,
    TracingConfig,
    _otlp_url,
    current_traceparent,
    new_traceparent,
    parse_traceparent,
)

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_counters_keep_daprds_names_and_labels() -> None:
    m = SidecarMetrics("orders", namespace="prod")
    m.add("dapr_component_state_count", {"component": "statestore", "operation": "set", "success": "true"})
    m.add("dapr_component_state_count", {"component": "statestore", "operation": "set", "success": "true"})
    text = m.render()
    assert "# TYPE dapr_component_state_count counter" in text
    assert (
        'dapr_component_state_count{app_id="orders",component="statestore",namespace="prod",'
        'operation="set",success="true"} 2' in text.splitlines()
    )
    assert "_total" not in text  # daprd's exporter adds no suffix to its count views
    assert m.value("dapr_component_state_count", operation="set") == 2


def test_latency_is_a_millisecond_histogram_with_daprds_buckets() -> None:
    m = SidecarMetrics("a")
    labels = {"method": "GET", "path": "/v1.0/state/{store}/{key}", "status": "200"}
    m.observe("dapr_http_server_latency", labels, 2.5)
    m.observe("dapr_http_server_latency", labels, 700)
    lines = m.render().splitlines()
    assert "# TYPE dapr_http_server_latency histogram" in lines
    buckets = [line for line in lines if line.startswith("dapr_http_server_latency_bucket")]
    assert len(buckets) == len(LATENCY_BUCKETS_MS) + 1
    assert any('le="3"' in line and line.endswith(" 1") for line in buckets)
    assert any('le="+Inf"' in line and line.endswith(" 2") for line in buckets)
    assert any(line.startswith("dapr_http_server_latency_count") and line.endswith(" 2") for line in lines)


def test_label_values_are_escaped() -> None:
    m = SidecarMetrics('a"b')
    m.add("dapr_runtime_actor_activated_total", {"actor_type": "x\\y\nz"})
    assert 'app_id="a\\"b",actor_type="x\\\\y\\nz"' in m.render()


@pytest.mark.parametrize(
    ("spec", "exporting"),
    [
        (None, False),
        ({"samplingRate": "1"}, False),  # no endpoint: nothing exported
        ({"samplingRate": "0", "otel": {"endpointAddress": "127.0.0.1:4318"}}, False),
        ({"samplingRate": "0.5", "otel": {"endpointAddress": "127.0.0.1:4318"}}, True),
        ({"samplingRate": "1", "zipkin": {"endpointAddress": "http://127.0.0.1:9411/api/v2/spans"}}, True),
    ],
)
def test_tracing_is_off_without_a_rate_or_an_endpoint(spec: dict | None, exporting: bool) -> None:
    assert TracingConfig.from_spec(spec).exporting is exporting


@pytest.mark.parametrize(
    "spec",
    [
        {"samplingRate": "often"},
        {"samplingRate": "2"},
        {"samplingRate": "1", "otel": {"endpointAddress": "127.0.0.1:4317", "protocol": "grpc"}},
        "yes",
    ],
)
def test_bad_tracing_sections_are_refused_with_the_field(spec: object) -> None:
    with pytest.raises(ComponentError, match="tracing"):
        TracingConfig.from_spec(spec)  # type: ignore[arg-type]


def test_otlp_endpoint_as_daprd_takes_it() -> None:
    assert _otlp_url("collector:4318", False) == "http://collector:4318/v1/traces"
    assert _otlp_url("collector:4318", True) == "https://collector:4318/v1/traces"
    assert _otlp_url("http://c:4318/v1/traces", False) == "http://c:4318/v1/traces"


def test_traceparent_parsing_and_children() -> None:
    assert parse_traceparent(PARENT) == ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", "01")
    for bad in (
        None,
        "",
        "garbage",
        "00-" + "0" * 32 + "-00f067aa0ba902b7-01",
        PARENT.replace("00-", "ff-", 1),
    ):
        assert parse_traceparent(bad) is None
    child = parse_traceparent(new_traceparent(PARENT))
    assert (
        child is not None
        and child[0] == "4bf92f3577b34da6a3ce929d0e0e4736"
        and child[1] != "00f067aa0ba902b7"
    )
    assert new_traceparent(None, sampled=False).endswith("-00")


def test_a_span_without_an_exporter_still_carries_the_trace() -> None:
    tracer = SidecarTracer("a", TracingConfig(sampling_rate=1.0))
    assert current_traceparent() is None
    with tracer.span("call", PARENT) as span:
        assert current_traceparent() == span.traceparent
        assert span.traceparent.split("-")[1] == PARENT.split("-")[1]
    assert current_traceparent() is None


def test_metrics_configuration_can_turn_the_port_off() -> None:
    assert Telemetry("a", {"metrics": {"enabled": False}}, metrics_port=9090).metrics_port is None
    assert Telemetry("a", {"metric": {"enabled": "false"}}, metrics_port=9090).metrics_port is None
    assert Telemetry("a", {}, metrics_port=9090).metrics_port == 9090


def test_sidecar_flags_as_daprd() -> None:
    parser = build_parser()
    args = parser.parse_args(["sidecar", "--app-id", "a"])
    assert args.metrics_port == 9090 and args.enable_metrics is True
    args = parser.parse_args(["sidecar", "--app-id", "a", "--enable-metrics=false", "--metrics-port", "9191"])
    assert args.enable_metrics is False and args.metrics_port == 9191
    assert _flag("T") is True and _flag("0") is False
    with pytest.raises(argparse.ArgumentTypeError):
        _flag("maybe")
