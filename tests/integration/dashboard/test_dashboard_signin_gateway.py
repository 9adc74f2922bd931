"""The dashboard's sign-in against the real gateway: dashboard (VIGIL_DASHBOARD_SIGN_IN=1), gateway and
alerting as processes behind localdapr sidecars, keys made with `vigil keys create`. Without a session
the API is a 401 and a page goes to /login; a key the gateway does not know opens nothing; a read key
opens a session that cannot acknowledge; an operate key's acknowledgement is recorded under the key's
name, whatever the form says.

A module of its own: pubsub.in-memory is process-wide (see tests/integration/alerting).
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from apps.common.names import DASHBOARD_APP_ID, GATEWAY_APP_ID, TOPIC_ALERTS
from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port, wait_until
from tests.integration.alerting.test_alerting_sidecar import Alerting, start_alerting, write_resources
from tests.unit.alerting.helpers import alert

pytestmark = pytest.mark.sidecar

REPO = Path(__file__).resolve().parents[3]


@dataclass
class Platform:
    alerting: Alerting
    url: str  # the dashboard
    keys: dict[str, str]  # "read", "operate" -> key


def _make_key(resources: Path, name: str, scopes: list[str]) -> str:
    scope_args = [arg for scope in scopes for arg in ("--scope", scope)]
    made = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "keys", "--resources", str(resources), "create", "--name", name]
        + scope_args,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return made.stdout.strip()


def _start(app_id: str, target: str, resources: Path, registry: Path, env: dict[str, str]) -> tuple:  # type: ignore[type-arg]
    port = free_port()
    sidecar = SidecarThread(
        SidecarOptions(app_id=app_id, resources_paths=[resources], app_port=port, registry_dir=registry)
    ).start()
    app = AppProcess(target, port, sidecar.options.app_env(), env, cwd=REPO, name=app_id)
    return sidecar, app, port


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("dash-signin")
    resources = write_resources(tmp / "res")
    keys = {
        "read": _make_key(resources, "viewer-1", ["read"]),
        "operate": _make_key(resources, "ops-1", ["read", "operate"]),
    }
    alerting = start_alerting(resources, tmp / "reg")
    started: list[tuple] = []  # type: ignore[type-arg]
    try:
        for app_id, target, env in (
            (GATEWAY_APP_ID, "apps.gateway.app:app", {}),
            (DASHBOARD_APP_ID, "apps.dashboard.app:app", {"VIGIL_DASHBOARD_SIGN_IN": "1"}),
        ):
            sidecar, app, port = _start(app_id, target, resources, tmp / "reg", env)
            started.append((sidecar, app))
            app.start(timeout=60)
            sidecar.wait_app_ready()
        with pytest.MonkeyPatch.context() as mp:
            # The SDK's health check (publishing from this process) reads DAPR_HTTP_PORT.
            mp.setenv("DAPR_HTTP_PORT", str(alerting.publisher.http_port))
            yield Platform(alerting, f"http://127.0.0.1:{port}", keys)
    finally:
        for sidecar, app in reversed(started):
            app.stop()
            sidecar.stop()
        alerting.stop()


def _session(platform: Platform, key: str) -> httpx.Client:
    client = httpx.Client(base_url=platform.url, timeout=30)
    answer = client.post("/api/session", json={"key": key})
    assert answer.status_code == 200, answer.text
    return client


def test_without_a_session_nothing_is_shown(platform: Platform) -> None:
    api = httpx.get(f"{platform.url}/api/fleet", timeout=30)
    assert api.status_code == 401 and api.json()["required_scope"] == "read"
    page = httpx.get(f"{platform.url}/alerts", timeout=30)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/alerts"
    assert httpx.get(f"{platform.url}/login", timeout=30).status_code == 200
    assert httpx.get(f"{platform.url}/healthz", timeout=30).status_code == 200


def test_a_key_the_gateway_does_not_know_opens_nothing(platform: Platform) -> None:
    answer = httpx.post(f"{platform.url}/api/session", json={"key": "vgl_" + "x" * 40}, timeout=30)
    assert answer.status_code == 401 and "cookie" not in {k.lower() for k in answer.headers}
    assert "vigil_session" not in answer.cookies


def test_a_read_key_shows_but_cannot_acknowledge(platform: Platform) -> None:
    with contextlib.closing(_session(platform, platform.keys["read"])) as client:
        assert client.get("/api/fleet").status_code == 200
        refused = client.post("/api/alerts/sg-001:rul_low:1/ack", json={"note": "x"})
        assert refused.status_code == 403 and refused.json()["required_scope"] == "operate"


def test_an_acknowledgement_is_recorded_under_the_key_s_name(platform: Platform) -> None:
    platform.alerting.publish(TOPIC_ALERTS, alert("open", equipment_id="sg-002"))
    with contextlib.closing(_session(platform, platform.keys["operate"])) as client:
        wait_until(
            lambda: any(r["id"] == "sg-002:rul_low:1" for r in client.get("/api/alerts").json()["rows"]),
            timeout=20,
            what="the alert in the dashboard",
        )
        acked = client.post("/api/alerts/sg-002:rul_low:1/ack", json={"by": "mallory", "note": "on it"})
        assert acked.status_code == 200, acked.text
        assert acked.json()["acknowledged_by"] == "ops-1"
