"""The dashboard in the whole platform (embedded profile): after a short FD001 replay its JSON API and
pages show the fleet, the machine's RUL chart and alerts, the alerts and the model registry, all read
through its own sidecar (service invocation of alerting, training and inference; EquipmentActor calls);
an acknowledgement goes through to alerting; `/docs` loads nothing from a CDN.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from apps.common.profiles import TURBOFAN
from localdapr.testing import wait_until
from tests.e2e.platform import Platform, running_platform, write_components
from tests.e2e.test_pipeline import fleet_batches, post

pytestmark = pytest.mark.e2e

UNIT = 1  # FD001 unit 1 runs 192 cycles to failure: warning, then critical, near its end


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("e2e-dashboard")
    components = write_components(tmp / "components", "embedded")
    # 120 rounds: with fewer the small model (learning rate 0.03) never predicts an engine critical.
    env = {"VIGIL_TRAINING_N_ESTIMATORS": "120", "VIGIL_EQUIPMENT_HEALTH_PUBLISH_SECONDS": "0"}
    with running_platform(components, tmp, env) as p:
        yield p


def get(platform: Platform, path: str, app: str = "dashboard") -> httpx.Response:
    return httpx.get(f"{platform.url(app)}{path}", timeout=30)


def test_dashboard_shows_a_replayed_machine(platform: Platform) -> None:
    machine = f"dash-{uuid.uuid4().hex[:6]}-{UNIT:03d}"
    for batch in fleet_batches(machine[: -len(f"{UNIT:03d}")], (UNIT,), cycles_per_batch=20):
        resp = post(platform, batch)
        assert resp.status_code == 200, resp.text

    def fleet_row() -> dict[str, Any] | None:
        resp = get(platform, "/api/fleet")
        assert resp.status_code == 200, resp.text
        rows = [r for r in resp.json()["rows"] if r["equipment_id"] == machine]
        return rows[0] if rows and rows[0]["status"] == "critical" and rows[0]["open_alerts"] else None

    row = wait_until(fleet_row, timeout=60, interval=0.5, what=f"{machine} critical in the dashboard's fleet")
    assert row["predicted_rul"] is not None and row["predicted_rul"] <= TURBOFAN.thresholds.critical_rul
    assert row["model_version"] == 1 and row["last_reading_at"]
    fleet = get(platform, "/api/fleet").json()
    assert fleet["counts"]["critical"] >= 1 and fleet["total"] == sum(fleet["counts"].values())

    view = get(platform, f"/api/machines/{machine}").json()  # GetHealth and GetHistory through actors
    assert view["summary"]["status"] == "critical"
    series = view["chart"]["series"][0]
    assert len(series["data"]) > 100  # one prediction per cycle once the window is full
    assert [m["yAxis"] for m in series["markLine"]["data"]][:2] == [
        TURBOFAN.thresholds.warning_rul,
        TURBOFAN.thresholds.critical_rul,
    ]
    assert view["alerts"] and view["sensors"], view
    alert_id = view["alerts"][0]["id"]

    alerts = get(platform, "/api/alerts").json()
    assert alerts["counts"]["open"] >= 1 and alert_id in {r["id"] for r in alerts["rows"]}

    acked = httpx.post(
        f"{platform.url('dashboard')}/api/alerts/{alert_id}/ack", json={"by": "e2e"}, timeout=30
    )
    assert acked.status_code == 200, acked.text
    assert acked.json()["state"] == "acknowledged" and acked.json()["acknowledged_by"] == "e2e"
    assert get(platform, f"/v1/alerts/{alert_id}", app="alerting").json()["state"] == "acknowledged"
    missing = httpx.post(f"{platform.url('dashboard')}/api/alerts/{machine}:rul_low:99/ack", timeout=30)
    assert missing.status_code == 404, missing.text

    models = get(platform, "/api/models").json()
    (v1,) = [r for r in models["rows"] if r["name"] == TURBOFAN.model_name and r["version"] == 1]
    assert v1["champion"] and v1["serving"] and v1["metric_rmse"] > 0
    (turbofan,) = [m for m in models["models"] if m["name"] == TURBOFAN.model_name]
    assert turbofan["champion"] == 1 and turbofan["versions"][0]["onnx_sha256"]

    for path, expected in (
        ("/", machine),  # the grid's rows are in the page
        (f"/machine/{machine}", "Predicted remaining useful life"),
        ("/alerts", alert_id),
        ("/models", "turbofan-rul v1 model card"),
    ):
        page = get(platform, path)
        assert page.status_code == 200, (path, page.text[:500])
        assert expected in page.text, path

    subscriptions = get(platform, "/dapr/subscribe").json()
    assert {s["topic"] for s in subscriptions} == {"alerts", "equipment-health", "model-updates"}


@pytest.mark.parametrize("app", ["ingestion", "equipment", "inference", "training", "alerting", "dashboard"])
def test_every_app_serves_its_docs_without_a_cdn(platform: Platform, app: str) -> None:
    docs = get(platform, "/docs", app)
    assert docs.status_code == 200 and "SwaggerUIBundle" in docs.text
    assert "cdn." not in docs.text and "https://" not in docs.text.split("<body>")[0]
    bundle = get(platform, "/static-offline-docs/swagger-ui-bundle.js", app)
    assert bundle.status_code == 200 and len(bundle.content) > 100_000
    assert get(platform, "/openapi.json", app).status_code == 200
