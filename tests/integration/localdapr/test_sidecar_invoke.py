"""Service invocation between two apps through localdapr (HTTP and gRPC, verbs, errors)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprHttpError

from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port
from tests.integration.localdapr.components import component, unique, write

pytestmark = pytest.mark.sidecar

APP = "tests.integration.localdapr.sidecar_apps.echo_app:app"
REPO = Path(__file__).resolve().parents[3]


@dataclass
class Apps:
    a: SidecarThread
    b: SidecarThread
    app_a: AppProcess
    app_b: AppProcess


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    tmp = tmp_path_factory.mktemp("invoke")
    write(tmp / "res", "state.yaml", component("statestore", "state.in-memory", {}))
    started = []
    for name in ("a", "b"):
        port = free_port()
        sc = SidecarThread(
            SidecarOptions(
                app_id=unique(f"app-{name}"),
                resources_paths=[tmp / "res"],
                app_port=port,
                registry_dir=tmp / "reg",
            )
        ).start()
        app = AppProcess(APP, port, sc.options.app_env(), cwd=REPO, name=sc.options.app_id).start()
        sc.wait_app_ready()
        started.append((sc, app))
    yield Apps(started[0][0], started[1][0], started[0][1], started[1][1])
    for sc, app in started:
        app.stop()
        sc.stop()


@pytest.fixture
def client(apps: Apps, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaprClient]:
    monkeypatch.setenv("DAPR_HTTP_PORT", str(apps.a.http_port))
    monkeypatch.setenv("DAPR_GRPC_PORT", str(apps.a.grpc_port))
    with DaprClient() as c:
        yield c


def test_http_get_with_query_and_headers(apps: Apps, client: DaprClient) -> None:
    resp = client.invoke_method(
        apps.b.options.app_id,
        "echo/items/42",
        http_verb="GET",
        http_querystring=(("q", "pump"), ("n", "3")),
        metadata=(("x-custom", "yes"),),
    )
    body = json.loads(resp.data)
    assert body["method"] == "GET" and body["path"] == "items/42"
    assert body["query"] == {"q": "pump", "n": "3"}
    assert body["x_custom"] == "yes"
    assert body["caller"] == apps.a.options.app_id
    assert body["app_id"] == apps.b.options.app_id


@pytest.mark.parametrize("verb", ["POST", "PUT", "DELETE", "PATCH"])
def test_http_verbs_and_body(apps: Apps, client: DaprClient, verb: str) -> None:
    resp = client.invoke_method(apps.b.options.app_id, "echo/x", data=b'{"v": 1}', http_verb=verb)
    body = json.loads(resp.data)
    assert body["method"] == verb and body["body"] == '{"v": 1}'


def test_errors_propagate_with_their_status(apps: Apps, client: DaprClient) -> None:
    with pytest.raises(DaprHttpError) as info:
        client.invoke_method(apps.b.options.app_id, "status/418", http_verb="GET")
    assert info.value.status_code == 418
    raw = httpx.get(
        f"http://127.0.0.1:{apps.a.http_port}/v1.0/invoke/{apps.b.options.app_id}/method/status/503"
    )
    assert raw.status_code == 503 and raw.json()["message"] == "you asked for 503"


def test_unknown_app_is_err_direct_invoke(apps: Apps) -> None:
    raw = httpx.get(f"http://127.0.0.1:{apps.a.http_port}/v1.0/invoke/nobody-here/method/x")
    assert raw.status_code == 500
    assert raw.json()["errorCode"] == "ERR_DIRECT_INVOKE"
    assert "nobody-here" in raw.json()["message"]


def test_grpc_invoke_service(apps: Apps, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAPR_HTTP_PORT", str(apps.a.http_port))
    monkeypatch.setenv("DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")
    with DaprClient(address=apps.a.grpc_address) as c:
        resp = c.invoke_method(apps.b.options.app_id, "echo/via-grpc", data=b"hi", http_verb="POST")
        body = json.loads(resp.data)
        assert body["method"] == "POST" and body["path"] == "via-grpc" and body["body"] == "hi"
        with pytest.raises(Exception, match="418"):
            c.invoke_method(apps.b.options.app_id, "status/418", http_verb="GET")


def test_app_to_app_through_its_own_sidecar(apps: Apps) -> None:
    """App a's endpoint uses the aio DaprClient to call app b: the full app -> sidecar -> app path."""
    resp = httpx.get(f"http://127.0.0.1:{apps.app_a.port}/call/{apps.b.options.app_id}/hello", timeout=10)
    assert resp.status_code == 200
    assert resp.json()["caller"] == apps.a.options.app_id
    assert resp.json()["path"] == "hello"
