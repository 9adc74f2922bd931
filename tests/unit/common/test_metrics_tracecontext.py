"""apps/common/metrics.py and tracecontext.py: /metrics on an app, requests counted by route template,
trace context kept per request (started only at the edge) and handed to outgoing Dapr calls."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from apps.common import tracecontext
from apps.common.metrics import instrument, record_ingest, rejection_kind

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def counted(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def make_app(edge: bool) -> FastAPI:
    app = FastAPI()

    @app.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, object]:
        return {"trace": tracecontext.TRACEPARENT.get(), "headers": tracecontext.trace_headers()}

    instrument(app, edge=edge)
    return app


def test_requests_are_counted_by_route_template_and_status() -> None:
    client = TestClient(make_app(edge=False))
    route = {"method": "GET", "route": "/things/{thing_id}", "status": "200"}
    before = counted("vigil_http_requests_total", **route)
    assert client.get("/things/a").status_code == 200
    assert client.get("/things/b").status_code == 200
    assert counted("vigil_http_requests_total", **route) == before + 2
    missing = {"method": "GET", "route": "unmatched", "status": "404"}
    before_missing = counted("vigil_http_requests_total", **missing)
    client.get("/nowhere")
    assert counted("vigil_http_requests_total", **missing) == before_missing + 1
    scraped = client.get("/metrics")
    assert scraped.status_code == 200 and "vigil_http_requests_total" in scraped.text
    assert "/metrics" not in client.get("/openapi.json").text


def test_the_incoming_traceparent_is_kept_and_handed_on() -> None:
    client = TestClient(make_app(edge=False))
    body = client.get("/things/a", headers={"traceparent": PARENT}).json()
    assert body == {"trace": PARENT, "headers": {"traceparent": PARENT}}
    assert client.get("/things/a").json()["trace"] is None  # not the edge: the sidecar starts it
    assert client.get("/things/a", headers={"traceparent": "junk"}).json()["trace"] is None


def test_the_edge_starts_a_trace_when_none_comes() -> None:
    client = TestClient(make_app(edge=True))
    started = client.get("/things/a").json()["trace"]
    assert tracecontext.valid(started) and started != PARENT
    assert client.get("/things/a", headers={"traceparent": PARENT}).json()["trace"] == PARENT
    assert tracecontext.TRACEPARENT.get() is None  # nothing leaks out of the request


def test_rejections_are_counted_by_kind() -> None:
    assert rejection_kind("sensor 'sensor_2' value 1e9 outside the plausible range [0, 1]") == "out_of_range"
    assert rejection_kind("not applied, retry: equipment actor call failed: boom") == "actor_unavailable"
    assert rejection_kind("too_late: seq 3 was never applied") == "too_late"
    assert rejection_kind("readings.0.seq: Input should be a valid integer") == "invalid"
    before = counted("vigil_readings_rejected_total", reason="too_far")
    accepted = counted("vigil_readings_accepted_total")
    record_ingest(3, 1, ["too_far: seq 9 jumps", "too_far: seq 10 jumps"])
    assert counted("vigil_readings_rejected_total", reason="too_far") == before + 2
    assert counted("vigil_readings_accepted_total") == accepted + 3
