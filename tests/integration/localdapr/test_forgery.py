"""Forgery from inside the host (issue 10), tried against the shipped configuration: each is refused.

The embedded profile's component files as shipped (their scopes and topic scoping; only the database
files moved to a temporary folder) and dapr-config/config.yaml (access control, secret scopes), with
alerting and equipment as real processes behind their sidecars, each with its own DAPR_API_TOKEN and
APP_API_TOKEN as `vigil up` gives them. The forger is a local process: it can reach every port, and any
sidecar it starts itself under another app id, but it has none of the tokens.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError

from apps.common.names import (
    ALERTING_APP_ID,
    EQUIPMENT_ACTOR_TYPE,
    EQUIPMENT_APP_ID,
    INGESTION_APP_ID,
    MODEL_STORE,
    PUBSUB,
    SECRET_STORE,
    TOPIC_ALERTS,
    TRAINING_APP_ID,
)
from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port, wait_until
from tests.unit.alerting.helpers import alert

pytestmark = pytest.mark.sidecar

REPO = Path(__file__).resolve().parents[3]
SHIPPED = ("statestore.yaml", "modelstore.yaml", "pubsub.yaml", "secretstore.yaml")


def shipped_components(folder: Path) -> Path:
    """components/embedded as shipped, with its files under `folder` instead of .localdapr/."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in SHIPPED:
        doc = yaml.safe_load((REPO / "components" / "embedded" / name).read_text())
        for entry in doc["spec"]["metadata"]:
            if entry["name"] == "connectionString":
                entry["value"] = str(folder / Path(entry["value"]).name)
            if entry["name"] == "secretsFile":
                entry["value"] = str(REPO / entry["value"])
        (folder / name).write_text(yaml.safe_dump(doc))
    return folder


@dataclass
class Platform:
    sidecars: dict[str, SidecarThread]
    apps: dict[str, AppProcess]
    tokens: dict[str, tuple[str, str]]  # app id -> (DAPR_API_TOKEN, APP_API_TOKEN)

    def url(self, app_id: str) -> str:
        return f"http://127.0.0.1:{self.apps[app_id].port}"

    def as_sidecar(self, app_id: str) -> dict[str, str]:
        """What only the app's sidecar sends it (to read alerting's state in the test)."""
        return {"dapr-api-token": self.tokens[app_id][1]}

    @contextlib.contextmanager
    def client(self, app_id: str) -> Iterator[DaprClient]:
        """An SDK client of `app_id`'s sidecar, with that sidecar's token (the forger started it)."""
        sidecar = self.sidecars[app_id]
        with pytest.MonkeyPatch.context() as mp:  # the SDK reads these from the environment
            mp.setenv("DAPR_API_TOKEN", self.tokens[app_id][0])
            mp.setenv("DAPR_HTTP_PORT", str(sidecar.http_port))
            mp.setenv("DAPR_GRPC_PORT", str(sidecar.grpc_port))
            with DaprClient(address=sidecar.grpc_address) as client:
                yield client


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("forgery")
    resources = shipped_components(tmp / "components")
    ids = (ALERTING_APP_ID, EQUIPMENT_APP_ID, INGESTION_APP_ID, TRAINING_APP_ID)
    tokens = {app_id: (f"dapr-{app_id}-t0ken", f"app-{app_id}-t0ken") for app_id in ids}
    sidecars: dict[str, SidecarThread] = {}
    apps: dict[str, AppProcess] = {}
    try:
        for app_id in ids:
            # alerting and equipment run their apps; ingestion and training are sidecars a forger started.
            port = free_port() if app_id in (ALERTING_APP_ID, EQUIPMENT_APP_ID) else None
            sidecars[app_id] = SidecarThread(
                SidecarOptions(
                    app_id=app_id,
                    resources_paths=[resources],
                    app_port=port,
                    registry_dir=tmp / "registry",
                    config_file=REPO / "dapr-config" / "config.yaml",
                    api_token=tokens[app_id][0],
                    app_api_token=tokens[app_id][1],
                )
            ).start()
            if port:
                module = f"apps.{app_id}.app:app"
                env = sidecars[app_id].options.app_env()
                apps[app_id] = AppProcess(module, port, env, cwd=REPO, name=app_id).start()
                sidecars[app_id].wait_app_ready(60)
        yield Platform(sidecars, apps, tokens)
    finally:
        for app in apps.values():
            app.stop()
        for sidecar in sidecars.values():
            sidecar.stop()


@pytest.fixture(scope="module")
def open_alert(platform: Platform) -> dict[str, Any]:
    """A real open alert, published by equipment (the one app allowed to) and recorded by alerting."""
    event = alert("open", equipment_id="forgery-001", severity="critical", rul=5.0)
    with platform.client(EQUIPMENT_APP_ID) as client:
        client.publish_event(
            PUBSUB, TOPIC_ALERTS, event.model_dump_json(), data_content_type="application/json"
        )
    url = f"{platform.url(ALERTING_APP_ID)}/v1/alerts/{event.id}"

    def recorded() -> dict[str, Any] | None:
        resp = httpx.get(url, headers=platform.as_sidecar(ALERTING_APP_ID))
        return resp.json() if resp.status_code == 200 else None

    return wait_until(recorded, timeout=30, what="alerting records the alert")


def alert_now(platform: Platform, alert_id: str) -> dict[str, Any]:
    url = f"{platform.url(ALERTING_APP_ID)}/v1/alerts/{alert_id}"
    return httpx.get(url, headers=platform.as_sidecar(ALERTING_APP_ID)).json()


def test_acknowledging_an_alert_on_alertings_port_needs_its_sidecar(
    platform: Platform, open_alert: dict[str, Any]
) -> None:
    url = f"{platform.url(ALERTING_APP_ID)}/v1/alerts/{open_alert['id']}/ack"
    refused = httpx.post(url, json={"by": "forger", "note": "nothing to see"})
    assert refused.status_code == 401
    assert alert_now(platform, open_alert["id"])["state"] == open_alert["state"] == "open"


def test_a_clear_posted_to_alertings_subscription_route_needs_its_sidecar(
    platform: Platform, open_alert: dict[str, Any]
) -> None:
    subscriptions = httpx.get(
        f"{platform.url(ALERTING_APP_ID)}/dapr/subscribe", headers=platform.as_sidecar(ALERTING_APP_ID)
    ).json()
    route = next(s["route"] for s in subscriptions if s["topic"] == TOPIC_ALERTS)
    clear = alert("clear", equipment_id="forgery-001", severity="critical", updated=60, rul=150.0)
    envelope = {"id": "forged", "specversion": "1.0", "type": "com.dapr.event.sent", "source": "equipment"}
    body = {
        **envelope,
        "topic": TOPIC_ALERTS,
        "pubsubname": PUBSUB,
        "data": json.loads(clear.model_dump_json()),
    }
    refused = httpx.post(f"{platform.url(ALERTING_APP_ID)}{route}", json=body)
    assert refused.status_code == 401
    assert alert_now(platform, open_alert["id"])["state"] == "open"


@pytest.mark.parametrize(
    ("verb", "path"),
    [
        ("PUT", f"/actors/{EQUIPMENT_ACTOR_TYPE}/fd001-001/method/Ingest"),
        ("PUT", f"/actors/{EQUIPMENT_ACTOR_TYPE}/fd001-001/method/ResolveAlert"),
        ("DELETE", f"/actors/{EQUIPMENT_ACTOR_TYPE}/fd001-001"),  # deactivation
        ("GET", "/dapr/config"),
    ],
)
def test_actor_calls_on_equipments_port_need_its_sidecar(platform: Platform, verb: str, path: str) -> None:
    refused = httpx.request(verb, f"{platform.url(EQUIPMENT_APP_ID)}{path}", json={})
    assert refused.status_code == 401


def test_a_forged_alert_through_a_sidecar_not_allowed_to_publish_it_is_refused(platform: Platform) -> None:
    forged = alert("open", equipment_id="forgery-002", severity="critical")
    with platform.client(INGESTION_APP_ID) as client, pytest.raises(DaprGrpcError) as refused:
        client.publish_event(
            PUBSUB, TOPIC_ALERTS, forged.model_dump_json(), data_content_type="application/json"
        )
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    assert refused.value.details() == f"topic {TOPIC_ALERTS} is not allowed for app id {INGESTION_APP_ID}"
    http = httpx.post(
        f"http://127.0.0.1:{platform.sidecars[INGESTION_APP_ID].http_port}/v1.0/publish/{PUBSUB}/{TOPIC_ALERTS}",
        content=forged.model_dump_json(),
        headers={"dapr-api-token": platform.tokens[INGESTION_APP_ID][0], "content-type": "application/json"},
    )
    assert http.status_code == 403 and http.json()["errorCode"] == "ERR_PUBSUB_FORBIDDEN"
    resp = httpx.get(
        f"{platform.url(ALERTING_APP_ID)}/v1/alerts/{forged.id}", headers=platform.as_sidecar(ALERTING_APP_ID)
    )
    assert resp.status_code == 404


def test_the_model_registry_cannot_be_written_outside_its_scopes(platform: Platform) -> None:
    for app_id in (INGESTION_APP_ID, ALERTING_APP_ID, EQUIPMENT_APP_ID):
        with platform.client(app_id) as client, pytest.raises(DaprGrpcError) as refused:
            client.save_state(MODEL_STORE, "champion:turbofan-rul", '{"version": 666}')
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        # daprd's answer for a store that does not exist for this app (ErrorInfo reason, message).
        assert refused.value.error_code() == "DAPR_STATE_NOT_FOUND"
        assert refused.value.details() == f"state store {MODEL_STORE} is not found"


def test_secrets_cannot_be_read_by_apps_the_configuration_denies(platform: Platform) -> None:
    base = f"http://127.0.0.1:{platform.sidecars[INGESTION_APP_ID].http_port}/v1.0/secrets/{SECRET_STORE}"
    headers = {"dapr-api-token": platform.tokens[INGESTION_APP_ID][0]}
    one = httpx.get(f"{base}/notification:webhook-url", headers=headers)
    assert one.status_code == 403
    assert one.json() == {
        "errorCode": "ERR_PERMISSION_DENIED",
        "message": f'access denied by policy to get "notification:webhook-url" from "{SECRET_STORE}"',
    }
    # a bulk read gets only what every app may read: the model-signing public key (not a secret)
    assert list(httpx.get(f"{base}/bulk", headers=headers).json()) == ["model-signing:public-key"]
    with platform.client(ALERTING_APP_ID) as client, pytest.raises(grpc.RpcError) as refused:
        client.get_secret(SECRET_STORE, "notification:webhook-url")
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_an_invocation_access_control_denies_gets_403_and_alerting_never_sees_it(
    platform: Platform, open_alert: dict[str, Any]
) -> None:
    with platform.client(TRAINING_APP_ID) as client:
        try:
            client.invoke_method(
                ALERTING_APP_ID,
                f"v1/alerts/{open_alert['id']}/ack",
                data='{"by": "training"}',
                http_verb="POST",
            )
        except Exception as exc:  # noqa: BLE001 - the SDK's error type depends on the protocol
            error = exc
        else:
            pytest.fail("training acknowledged an alert")
    assert getattr(error, "status_code", None) == 403
    assert getattr(error, "error_code", None) == "ERR_DIRECT_INVOKE"
    assert "access control policy has denied access to id: spiffe://public/ns/default/training" in str(error)
    assert alert_now(platform, open_alert["id"])["state"] == "open"
