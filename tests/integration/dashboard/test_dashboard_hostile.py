"""The dashboard as a real process behind a sidecar with no components (NiceGUI mounted: a process of
its own, since importing the app mounts NiceGUI): its JSON API refuses hostile bodies with a 4xx before
any route or service sees them, while NiceGUI's own traffic (pages, socket.io) is left to NiceGUI."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from apps.common.names import DASHBOARD_APP_ID
from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("dashboard")
    (tmp / "res").mkdir()
    port = free_port()
    sidecar = SidecarThread(
        SidecarOptions(
            app_id=DASHBOARD_APP_ID, resources_paths=[tmp / "res"], app_port=port, registry_dir=tmp
        )
    ).start()
    app = AppProcess(
        "apps.dashboard.app:app", port, sidecar.options.app_env(), {}, cwd=REPO, name="dashboard"
    )
    try:
        app.start(timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        app.stop()
        sidecar.stop()


def test_a_text_plain_body_is_a_415(dashboard: str) -> None:
    answer = httpx.post(
        f"{dashboard}/api/alerts/e1:rul_low:1/ack", content=b"by=me", headers={"content-type": "text/plain"}
    )
    assert answer.status_code == 415


def test_deeply_nested_json_is_a_400(dashboard: str) -> None:
    deep = b"[" * 10_000 + b"]" * 10_000
    answer = httpx.post(
        f"{dashboard}/api/alerts/e1:rul_low:1/ack", content=deep, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 400 and "nested deeper" in answer.json()["detail"]


def test_unknown_fields_are_a_422(dashboard: str) -> None:
    answer = httpx.post(f"{dashboard}/api/alerts/e1:rul_low:1/ack", json={"by": "me", "admin": True})
    assert answer.status_code == 422


def test_the_pages_still_load(dashboard: str) -> None:
    assert httpx.get(f"{dashboard}/healthz").status_code == 200
    assert httpx.get(f"{dashboard}/alerts", timeout=30).status_code == 200
