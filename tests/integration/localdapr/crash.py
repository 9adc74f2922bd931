"""The subscriber-crash scenario every broker must pass: its sidecar is SIGKILLed mid-stream and
restarted, and every message is still processed (what was in flight was never acknowledged)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from dapr.clients import DaprClient

from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarProcess, SidecarThread, free_port, wait_until
from tests.integration.localdapr.components import unique

APP = "tests.integration.localdapr.sidecar_apps.echo_app:app"
REPO = Path(__file__).resolve().parents[3]


def assert_subscriber_crash_loses_nothing(
    tmp_path: Path,
    resources: Path,
    sub_id: str,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    total: int = 60,
) -> None:
    """Publish `total` messages on `prefix`orders to app `sub_id` (the echo app), kill its sidecar while
    the app holds deliveries, release them, restart the sidecar: every message ends up processed."""
    port = free_port()
    sidecar = SidecarProcess(sub_id, [resources], app_port=port, registry=tmp_path / "reg").start()
    app = AppProcess(
        APP, port, sidecar.app_env(), {"TOPIC_PREFIX": prefix, "HOLD_AFTER": "5"}, cwd=REPO, name=sub_id
    ).start()
    publisher = SidecarThread(
        SidecarOptions(app_id=unique("pub"), resources_paths=[resources], registry_dir=tmp_path / "reg")
    ).start()

    def unique_ids() -> set[int]:
        events = httpx.get(f"http://127.0.0.1:{port}/received/orders", timeout=5).json()
        return {e["data"]["n"] for e in events}

    def held() -> int:
        return int(httpx.get(f"http://127.0.0.1:{port}/held", timeout=5).json())

    try:
        wait_until(lambda: sidecar.healthy("/v1.0/healthz"), timeout=20, what="subscriber sidecar subscribed")
        monkeypatch.setenv("DAPR_HTTP_PORT", str(publisher.http_port))
        with DaprClient(address=publisher.grpc_address) as client:
            for i in range(total):
                client.publish_event(
                    "pubsub", prefix + "orders", json.dumps({"n": i}), data_content_type="application/json"
                )
        # The app holds every delivery after the fifth, so the crash lands mid-stream on any machine.
        wait_until(lambda: held() > 0, timeout=20, what="deliveries in flight, held by the app")
        sidecar.kill()  # messages are in flight, not acknowledged to the broker
        assert len(unique_ids()) < total
        httpx.post(f"http://127.0.0.1:{port}/release", timeout=5).raise_for_status()
        restarted = SidecarProcess(
            sub_id,
            [resources],
            app_port=port,
            registry=tmp_path / "reg",
            http_port=sidecar.http_port,
            grpc_port=sidecar.grpc_port,
        ).start()
        try:
            wait_until(lambda: unique_ids() == set(range(total)), timeout=60, what="all messages processed")
        finally:
            restarted.stop()
    finally:
        app.stop()
        sidecar.kill()
        publisher.stop()
