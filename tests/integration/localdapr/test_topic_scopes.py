"""Subscriptions outside an app's subscriptionScopes are not made, as daprd skips them."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port
from tests.integration.localdapr.components import component, unique, write

pytestmark = pytest.mark.sidecar

APP = "tests.integration.localdapr.sidecar_apps.echo_app:app"
REPO = Path(__file__).resolve().parents[3]


def test_only_the_scoped_subscriptions_are_made(tmp_path: Path) -> None:
    app_id, prefix = unique("scoped"), unique("t") + "-"
    scopes = {"subscriptionScopes": f"{app_id}={prefix}orders", "publishingScopes": f"{app_id}="}
    write(tmp_path, "pubsub.yaml", component("pubsub", "pubsub.in-memory", scopes))
    port = free_port()
    sidecar = SidecarThread(
        SidecarOptions(
            app_id=app_id, resources_paths=[tmp_path], app_port=port, registry_dir=tmp_path / "reg"
        )
    ).start()
    app = AppProcess(APP, port, sidecar.options.app_env(), {"TOPIC_PREFIX": prefix}, cwd=REPO).start()
    try:
        sidecar.wait_app_ready()
        meta = httpx.get(f"http://127.0.0.1:{sidecar.http_port}/v1.0/metadata").json()
        assert [s["topic"] for s in meta["subscriptions"]] == [f"{prefix}orders"]  # flaky, poison, raw: not
        refused = httpx.post(
            f"http://127.0.0.1:{sidecar.http_port}/v1.0/publish/pubsub/{prefix}orders", json={}
        )
        assert refused.status_code == 403  # listed with no topic to publish
        assert refused.json() == {
            "errorCode": "ERR_PUBSUB_FORBIDDEN",
            "message": f"topic {prefix}orders is not allowed for app id {app_id}",
        }
    finally:
        app.stop()
        sidecar.stop()
