"""localdapr's metrics endpoint (daprd's names, scraped) and tracing (Configuration spec.tracing):
spans exported to a local OTLP/HTTP or Zipkin receiver, one trace id from the caller through service
invocation and pub/sub (the CloudEvent's traceparent, the header the subscriber gets). The SDK is the
client; its gRPC calls carry the caller's traceparent through an interceptor, as the apps' do."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from dapr.clients import DaprClient

from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarProcess, SidecarThread, free_port, port_open, wait_until
from tests.integration.localdapr.components import component, unique, write
from tests.integration.localdapr.traces import ReceivedSpan, SpanReceiver, tracing_config

pytestmark = pytest.mark.sidecar

APP = "tests.integration.localdapr.sidecar_apps.echo_app:app"
REPO = Path(__file__).resolve().parents[3]
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"


@dataclass
class Pair:
    subscriber: SidecarThread
    publisher: SidecarThread
    app: AppProcess
    topic: str

    def received(self) -> list[dict]:
        url = f"http://127.0.0.1:{self.app.port}/received/declared-traced"
        return httpx.get(url, timeout=5).json()


def scrape(sidecar: SidecarThread) -> str:
    port = sidecar.options.metrics_port
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def sample(text: str, name: str, **labels: str) -> float:
    """The sum of `name`'s samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


class _Traceparent(grpc.UnaryUnaryClientInterceptor):
    def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
        metadata = [*(details.metadata or ()), ("traceparent", CALLER)]
        return continuation(details._replace(metadata=metadata), request)


def sdk_client(sidecar: SidecarThread, monkeypatch: pytest.MonkeyPatch, **kwargs: object) -> DaprClient:
    monkeypatch.setenv("DAPR_HTTP_PORT", str(sidecar.http_port))  # the SDK health-checks this port
    return DaprClient(address=sidecar.grpc_address, **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def receiver() -> Iterator[SpanReceiver]:
    with SpanReceiver() as r:
        yield r


def start_pair(tmp_path: Path, config: Path | None) -> Pair:
    res = tmp_path / "res"
    sub_id, topic = unique("sub"), unique("traced")
    write(res, "pubsub.yaml", component("pubsub", "pubsub.in-memory", {}))
    write(res, "state.yaml", component("statestore", "state.in-memory", {}))
    write(
        res,
        "subscription.yaml",
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: traced\nspec:\n"
        f"  pubsubname: pubsub\n  topic: {topic}\n  routes:\n    default: /declared/traced\n"
        f"scopes: [{sub_id}]\n",
    )
    app_port = free_port()
    subscriber = SidecarThread(
        SidecarOptions(
            app_id=sub_id,
            resources_paths=[res],
            app_port=app_port,
            registry_dir=tmp_path / "reg",
            config_file=config,
        )
    ).start()
    app = AppProcess(APP, app_port, subscriber.options.app_env(), {}, cwd=REPO, name=sub_id).start()
    subscriber.wait_app_ready()
    publisher = SidecarThread(
        SidecarOptions(
            app_id=unique("pub"), resources_paths=[res], registry_dir=tmp_path / "reg", config_file=config
        )
    ).start()
    return Pair(subscriber, publisher, app, topic)


@pytest.fixture
def traced(tmp_path: Path, receiver: SpanReceiver, request: pytest.FixtureRequest) -> Iterator[Pair]:
    exporter = getattr(request, "param", "otel")
    endpoint = (
        f"127.0.0.1:{receiver.port}"
        if exporter == "otel"
        else f"http://127.0.0.1:{receiver.port}/api/v2/spans"
    )
    pair = start_pair(tmp_path, tracing_config(tmp_path, endpoint, exporter))
    yield pair
    pair.app.stop()
    pair.subscriber.stop()
    pair.publisher.stop()


def test_metrics_count_state_pubsub_invocation_and_grpc(
    traced: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    pub, sub = traced.publisher, traced.subscriber
    with sdk_client(pub, monkeypatch) as client:
        for i in range(3):
            client.save_state("statestore", f"k{i}", "v")
            client.publish_event(
                "pubsub", traced.topic, json.dumps({"n": i}), data_content_type="application/json"
            )
        assert client.get_state("statestore", "k1").data == b"v"
    for _ in range(2):
        r = httpx.get(
            f"http://127.0.0.1:{pub.http_port}/v1.0/invoke/{sub.options.app_id}/method/echo/x", timeout=5
        )
        assert r.status_code == 200
    wait_until(lambda: len(traced.received()) == 3, timeout=15, what="three deliveries")

    published = scrape(pub)
    assert "# TYPE dapr_http_server_request_count counter" in published  # daprd's name: no _total
    grpc_publish = "/dapr.proto.runtime.v1.Dapr/PublishEvent"
    assert sample(published, "dapr_grpc_io_server_completed_rpcs", grpc_server_method=grpc_publish,
                  grpc_server_status="OK") == 3  # fmt: skip
    assert sample(published, "dapr_component_pubsub_egress_count", component="pubsub", success="true",
                  topic=traced.topic) == 3  # fmt: skip
    assert sample(published, "dapr_component_state_count", component="statestore", operation="set",
                  success="true") == 3  # fmt: skip
    assert sample(published, "dapr_component_state_count", operation="get") == 1
    route = "/v1.0/invoke/{app_id}/method/{method}"
    assert sample(published, "dapr_http_server_response_count", path=route, status="200") == 2
    assert sample(published, "dapr_http_server_latency_count", path=route, status="200") == 2
    assert sample(published, "dapr_runtime_service_invocation_req_sent_total",
                  destination_app_id=sub.options.app_id) == 2  # fmt: skip

    received = scrape(sub)
    assert sample(received, "dapr_component_pubsub_ingress_count", component="pubsub", topic=traced.topic,
                  process_status="success") == 3  # fmt: skip
    assert sample(received, "dapr_component_pubsub_ingress_latencies_count", topic=traced.topic) == 3


@pytest.mark.parametrize("traced", ["otel", "zipkin"], indirect=True)
def test_one_trace_through_invocation_and_pubsub(
    traced: Pair, receiver: SpanReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    pub, sub = traced.publisher, traced.subscriber
    # Service invocation over HTTP: the callee gets the caller's trace with the sidecar's span as parent.
    answer = httpx.get(
        f"http://127.0.0.1:{pub.http_port}/v1.0/invoke/{sub.options.app_id}/method/echo/t",
        headers={"traceparent": CALLER},
        timeout=5,
    ).json()
    handed = answer["traceparent"].split("-")
    assert handed[1] == CALLER_TRACE and handed[2] != CALLER.split("-")[2]
    # Publish over gRPC with the caller's traceparent in the metadata.
    with sdk_client(pub, monkeypatch, interceptors=[_Traceparent()]) as client:
        client.publish_event(
            "pubsub", traced.topic, json.dumps({"n": 1}), data_content_type="application/json"
        )
    event = wait_until(traced.received, timeout=15, what="the event delivered")[0]
    assert event["traceparent"].split("-")[1] == CALLER_TRACE  # the CloudEvent's extension
    assert event["traceid"] == event["traceparent"]
    assert event["_traceparent"].split("-")[1] == CALLER_TRACE  # the header the subscriber got

    wanted = (
        f"CallLocal/{sub.options.app_id}/echo/t",
        "/dapr.proto.runtime.v1.Dapr/PublishEvent",
        f"pubsub/{traced.topic}",
    )

    def spans() -> dict[str, ReceivedSpan]:
        trace = receiver.of_trace(CALLER_TRACE)
        found = {s.name: s for s in trace} | {s.span_id: s for s in trace}
        return found if all(w in found for w in (*wanted, handed[2])) else {}

    found = wait_until(spans, timeout=20, what="the spans exported")
    invoke = found[f"CallLocal/{sub.options.app_id}/echo/t"]
    publish = found["/dapr.proto.runtime.v1.Dapr/PublishEvent"]
    deliver = found[f"pubsub/{traced.topic}"]
    assert invoke.service == publish.service == pub.options.app_id
    assert invoke.parent_id == publish.parent_id == CALLER.split("-")[2]
    # What the callee got is the caller's sidecar's span, or the callee's sidecar's under it (the call
    # goes sidecar to sidecar, each opening its span, as in daprd).
    assert handed[2] == invoke.span_id or found[handed[2]].parent_id == invoke.span_id
    assert event["traceparent"].split("-")[2] == publish.span_id  # the event names the publish span
    assert deliver.service == sub.options.app_id and deliver.parent_id == publish.span_id
    assert event["_traceparent"].split("-")[2] == deliver.span_id


def test_no_endpoint_no_export_but_the_trace_goes_on(tmp_path: Path) -> None:
    """Tracing without an endpoint (as dapr-config/config.yaml: samplingRate "1", nothing else): no
    exporter is set up, and the caller's trace id is still handed on under a new span id."""
    config = tmp_path / "config.yaml"
    config.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: c\nspec:\n"
        '  tracing:\n    samplingRate: "1"\n'
    )
    pair = start_pair(tmp_path, config)
    try:
        assert not pair.publisher.sidecar.runtime.telemetry.tracer.config.exporting
        answer = httpx.get(
            f"http://127.0.0.1:{pair.publisher.http_port}/v1.0/invoke/{pair.subscriber.options.app_id}"
            "/method/echo/t",
            headers={"traceparent": CALLER},
            timeout=5,
        ).json()
        assert answer["traceparent"].split("-")[1] == CALLER_TRACE
        assert answer["traceparent"] != CALLER
    finally:
        pair.app.stop()
        pair.subscriber.stop()
        pair.publisher.stop()


def test_sidecar_flags_metrics_port_and_enable_metrics_false(tmp_path: Path) -> None:
    res = tmp_path / "res"
    write(res, "state.yaml", component("statestore", "state.in-memory", {}))
    port = free_port()
    on = SidecarProcess(unique("m"), [res], metrics_port=port).start()
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        assert "dapr_http_server_request_count" in text  # the start-up health probes are counted
    finally:
        on.stop()
    off_port = free_port()
    off = SidecarProcess(unique("m"), [res], metrics_port=off_port, args=["--enable-metrics=false"]).start()
    try:
        assert not port_open(off_port)
    finally:
        off.stop()
