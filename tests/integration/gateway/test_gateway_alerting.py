"""The gateway in front of a real service: gateway and alerting as processes behind real localdapr
sidecars, called through Dapr service invocation. The fleet and an alert come back through the
gateway, alerting's own 404 is passed on as it gave it, and an acknowledgement is recorded under the
API key's name, whatever the client says.

A module of its own: pubsub.in-memory is process-wide (see tests/integration/alerting).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from apps.common.names import GATEWAY_APP_ID, TOPIC_ALERTS, TOPIC_EQUIPMENT_HEALTH
from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port, wait_until
from tests.integration.alerting.test_alerting_sidecar import Alerting, start_alerting, write_resources
from tests.unit.alerting.helpers import alert, snapshot

pytestmark = pytest.mark.sidecar

REPO = Path(__file__).resolve().parents[3]


@dataclass
class Platform:
    alerting: Alerting
    url: str
    key: str

    def get(self, path: str, **params: str) -> httpx.Response:
        return httpx.get(f"{self.url}{path}", params=params, headers={"X-API-Key": self.key}, timeout=15)


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("gw-alerting")
    resources = write_resources(tmp / "res")
    made = subprocess.run(
        [
            sys.executable,
            "-m",
            "vigil.cli",
            "keys",
            "--resources",
            str(resources),
            "create",
            "--name",
            "ops-1",
        ]
        + ["--scope", "read", "--scope", "operate"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    alerting = start_alerting(resources, tmp / "reg")
    port = free_port()
    sidecar = SidecarThread(
        SidecarOptions(
            app_id=GATEWAY_APP_ID, resources_paths=[resources], app_port=port, registry_dir=tmp / "reg"
        )
    ).start()
    app: AppProcess | None = None
    try:
        app = AppProcess(
            "apps.gateway.app:app", port, sidecar.options.app_env(), {}, cwd=REPO, name="gateway"
        )
        app.start()
        sidecar.wait_app_ready()
        with pytest.MonkeyPatch.context() as mp:
            # The SDK's health check (publishing from this process) reads DAPR_HTTP_PORT.
            mp.setenv("DAPR_HTTP_PORT", str(alerting.publisher.http_port))
            yield Platform(alerting, f"http://127.0.0.1:{port}", made.stdout.strip())
    finally:
        if app is not None:
            app.stop()
        sidecar.stop()
        alerting.stop()


def test_fleet_and_alerts_come_through_the_gateway(platform: Platform) -> None:
    platform.alerting.publish(TOPIC_EQUIPMENT_HEALTH, snapshot("gw-001", status="warning"))
    platform.alerting.publish(TOPIC_ALERTS, alert("open", equipment_id="gw-001"))
    fleet = wait_until(
        lambda: (f := platform.get("/api/v1/fleet")).status_code == 200 and f.json()["total"] >= 1 and f,
        timeout=20,
        what="the snapshot in the fleet through the gateway",
    )
    assert fleet.headers["x-request-id"] and fleet.json()["counts"]["warning"] == 1
    one = wait_until(
        lambda: (a := platform.get("/api/v1/alerts/gw-001:rul_low:1")).status_code == 200 and a,
        timeout=20,
        what="the alert through the gateway",
    )
    assert one.json()["equipment_id"] == "gw-001"
    listed = platform.get("/api/v1/alerts", equipment_id="gw-001", state="open")
    assert [a["id"] for a in listed.json()] == ["gw-001:rul_low:1"]


def test_the_service_s_own_404_is_passed_on(platform: Platform) -> None:
    missing = platform.get("/api/v1/alerts/gw-001:rul_low:99")
    assert missing.status_code == 404 and "gw-001:rul_low:99" in missing.json()["detail"]


def test_an_acknowledgement_is_made_in_the_key_s_name(platform: Platform) -> None:
    platform.alerting.publish(TOPIC_ALERTS, alert("open", equipment_id="gw-002"))
    wait_until(lambda: platform.get("/api/v1/alerts/gw-002:rul_low:1").status_code == 200, timeout=20)
    ack = httpx.post(
        f"{platform.url}/api/v1/alerts/gw-002:rul_low:1/ack",
        headers={"X-API-Key": platform.key},
        json={"note": "crew on the way"},
        timeout=15,
    )
    assert ack.status_code == 200, ack.text
    assert ack.json()["state"] == "acknowledged"
    assert "ops-1" in ack.text and "crew on the way" in ack.text
