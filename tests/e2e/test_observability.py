"""Metrics and tracing across the running platform (embedded profile): every app's /metrics and its
sidecar's daprd metrics move as readings go through, and one batch of readings, sent without a
traceparent, is one trace from ingestion through the equipment actor call, inference and the
published alert to alerting, exported by the sidecars to a local OTLP/HTTP receiver."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
import yaml

from apps.common import cmapss
from apps.common.names import EQUIPMENT_ACTOR_TYPE, TOPIC_ALERTS
from localdapr.testing import wait_until
from tests.e2e.platform import REPO, Platform, alerts_of, running_platform, write_components
from tests.integration.localdapr.traces import ReceivedSpan, SpanReceiver

pytestmark = pytest.mark.e2e

UNIT = 3  # FD001 training unit 3 runs to failure: its last cycles open a rul_low alert


@dataclass
class Traced:
    platform: Platform
    receiver: SpanReceiver


@pytest.fixture(scope="module")
def traced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    tmp = tmp_path_factory.mktemp("e2e-observability")
    with SpanReceiver() as receiver:
        # The repository's Configuration, with tracing pointed at the receiver.
        config = yaml.safe_load((REPO / "dapr-config" / "config.yaml").read_text())
        config["spec"]["tracing"] = {
            "samplingRate": "1",
            "otel": {"endpointAddress": f"127.0.0.1:{receiver.port}", "isSecure": False, "protocol": "http"},
        }
        config_file = tmp / "config.yaml"
        config_file.write_text(yaml.safe_dump(config))
        components = write_components(tmp / "components", "embedded")
        with running_platform(components, tmp, config_file=config_file) as platform:
            yield Traced(platform, receiver)


def readings(equipment_id: str, cycles: range) -> list[dict[str, object]]:
    rows = cmapss.load_train()[UNIT]
    now = datetime.now(UTC).isoformat()
    return [
        {
            "equipment_id": equipment_id,
            "profile": "turbofan",
            "timestamp": now,
            "seq": c,
            "values": cmapss.row_values(rows[c - 1]),
        }
        for c in cycles
    ]


def whole_life(platform: Platform, equipment_id: str) -> int:
    """Unit 3's whole run to failure in one request (no traceparent: ingestion starts the trace)."""
    batch = readings(equipment_id, range(1, len(cmapss.load_train()[UNIT]) + 1))
    resp = httpx.post(f"{platform.url('ingestion')}/v1/readings", json=batch, timeout=60)
    assert resp.status_code == 200 and resp.json()["accepted"] == len(batch), resp.text
    return len(batch)


def sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if match and all(f'{k}="{v}"' in (match.group(1) or "") for k, v in labels.items()):
            total += float(match.group(2))
    return total


def app_metrics(platform: Platform, app_id: str) -> str:
    return httpx.get(f"{platform.url(app_id)}/metrics", timeout=10).text


def sidecar_metrics(platform: Platform, app_id: str) -> str:
    port = platform.apps[app_id].sidecar.options.metrics_port
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text


def test_one_batch_is_one_trace_from_ingestion_to_the_alert(traced: Traced) -> None:
    platform, receiver = traced.platform, traced.receiver
    machine = f"trace-{uuid.uuid4().hex[:8]}"
    whole_life(platform, machine)
    wait_until(lambda: alerts_of(platform, machine, "rul_low"), timeout=60, what="the rul_low alert")

    def ingest_span() -> ReceivedSpan | None:
        return next(
            (
                s
                for s in list(receiver.spans)
                if s.service == "ingestion"
                and s.name == f"CallActor/{EQUIPMENT_ACTOR_TYPE}/Ingest"
                and f"/{machine}/" in s.attributes.get("path", "")
            ),
            None,
        )

    ingest = wait_until(ingest_span, timeout=30, what="ingestion's actor call span")
    by_name = {}

    def whole_trace() -> bool:
        trace = receiver.of_trace(ingest.trace_id)
        by_name.clear()
        for s in trace:
            by_name.setdefault((s.service, s.name), s)
        wanted = [
            ("equipment", "CallLocal/inference/v1/predict"),
            ("equipment", "/dapr.proto.runtime.v1.Dapr/PublishEvent"),
            ("alerting", f"pubsub/{TOPIC_ALERTS}"),
        ]
        return all(w in by_name for w in wanted)

    wait_until(whole_trace, timeout=30, what=f"the trace {ingest.trace_id} through inference to alerting")
    predict = by_name[("equipment", "CallLocal/inference/v1/predict")]
    publish = by_name[("equipment", "/dapr.proto.runtime.v1.Dapr/PublishEvent")]
    delivery = by_name[("alerting", f"pubsub/{TOPIC_ALERTS}")]
    # Parents: ingestion started the trace (its sidecar's span has a parent only ingestion's app knew).
    assert ingest.parent_id
    assert predict.trace_id == publish.trace_id == delivery.trace_id == ingest.trace_id
    publishes = {s.span_id for s in receiver.of_trace(ingest.trace_id) if s.name == publish.name}
    assert delivery.parent_id in publishes


def test_app_and_sidecar_metrics_move_with_readings(traced: Traced) -> None:
    platform = traced.platform
    before = {a: app_metrics(platform, a) for a in ("ingestion", "inference", "alerting")}
    sidecars_before = {a: sidecar_metrics(platform, a) for a in ("ingestion", "equipment")}
    machine = f"metrics-{uuid.uuid4().hex[:8]}"
    sent = whole_life(platform, machine)
    bad = readings(machine, range(1, 2))
    bad[0]["values"] = {**bad[0]["values"], "sensor_2": 1e9}  # type: ignore[dict-item]
    resp = httpx.post(f"{platform.url('ingestion')}/v1/readings", json=bad, timeout=30)
    assert resp.status_code == 422, resp.text
    wait_until(lambda: alerts_of(platform, machine, "rul_low"), timeout=60, what="the rul_low alert")

    def moved(app: str, name: str, at_least: float = 1, **labels: str) -> bool:
        return (
            sample(app_metrics(platform, app), name, **labels) - sample(before[app], name, **labels)
            >= at_least
        )

    assert moved("ingestion", "vigil_readings_accepted_total", sent)
    assert moved("ingestion", "vigil_readings_rejected_total", reason="out_of_range")
    assert moved(
        "ingestion", "vigil_actor_calls_total", actor_type=EQUIPMENT_ACTOR_TYPE, method="Ingest", outcome="ok"
    )
    assert moved("ingestion", "vigil_actor_call_duration_seconds_count", actor_type=EQUIPMENT_ACTOR_TYPE)
    assert moved("ingestion", "vigil_http_requests_total", method="POST", route="/v1/readings", status="200")
    assert moved("ingestion", "vigil_http_requests_total", method="POST", route="/v1/readings", status="422")
    assert moved("inference", "vigil_predictions_total", model="turbofan-rul")
    assert (
        sample(app_metrics(platform, "inference"), "vigil_model_version_serving", model="turbofan-rul") >= 1
    )
    wait_until(
        lambda: moved("alerting", "vigil_alert_changes_total", kind="rul_low", state="open"),
        timeout=30,
        what="alerting counting the opened alert",
    )
    assert "# TYPE vigil_notification_failures_total counter" in app_metrics(platform, "alerting")

    actor_route = "/v1.0/actors/{actor_type}/{actor_id}/method/{method}"
    after = sidecar_metrics(platform, "ingestion")
    assert sample(after, "dapr_http_server_response_count", path=actor_route, status="200") > sample(
        sidecars_before["ingestion"], "dapr_http_server_response_count", path=actor_route, status="200"
    )
    equipment = sidecar_metrics(platform, "equipment")
    assert sample(equipment, "dapr_runtime_actor_activated_total", actor_type=EQUIPMENT_ACTOR_TYPE) > sample(
        sidecars_before["equipment"], "dapr_runtime_actor_activated_total", actor_type=EQUIPMENT_ACTOR_TYPE
    )
    assert sample(
        equipment, "dapr_component_pubsub_egress_count", topic=TOPIC_ALERTS, success="true"
    ) > sample(
        sidecars_before["equipment"], "dapr_component_pubsub_egress_count", topic=TOPIC_ALERTS, success="true"
    )
