"""Dapr API tokens, app tokens and access control between two sidecars, as daprd applies them.

Each sidecar has its own DAPR_API_TOKEN and APP_API_TOKEN: an app calls its sidecar with the first, the
sidecar calls its app with the second; a call travels to the callee's sidecar, whose Configuration's
accessControl decides on the caller's identity, verb and path before the callee app sees anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import httpx
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprHttpError
from dapr.proto import api_v1
from dapr.proto.runtime.v1 import dapr_pb2_grpc

from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port
from tests.integration.localdapr.components import component, unique, write

pytestmark = pytest.mark.sidecar

APP = "tests.integration.localdapr.sidecar_apps.echo_app:app"
REPO = Path(__file__).resolve().parents[3]


@dataclass
class Pair:
    caller: SidecarThread
    callee: SidecarThread
    other: SidecarThread  # a third app the callee's policy does not name
    callee_app: AppProcess
    tokens: dict[str, tuple[str, str]]  # app id -> (DAPR_API_TOKEN, APP_API_TOKEN)

    def echoed(self) -> list[str]:
        return httpx.get(f"http://127.0.0.1:{self.callee_app.port}/echoed").json()


def acl_config(caller: str) -> str:
    return f"""apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: acl
spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
      - appId: {caller}
        defaultAction: deny
        trustDomain: public
        namespace: default
        operations:
          - name: /echo/open/**
            httpVerb: [GET, POST]
            action: allow
          - name: /echo/one/*
            httpVerb: ["*"]
            action: allow
          - name: /echo/open/secret
            httpVerb: [GET]
            action: deny
"""


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("acl")
    write(tmp / "res", "state.yaml", component("statestore", "state.in-memory", {}))
    ids = {role: unique(f"acl-{role}") for role in ("caller", "callee", "other")}
    config = tmp / "config.yaml"
    config.write_text(acl_config(ids["caller"]))
    tokens = {app_id: (f"dapr-{app_id}", f"app-{app_id}") for app_id in ids.values()}
    sidecars: dict[str, SidecarThread] = {}
    callee_app: AppProcess | None = None
    try:
        for role, app_id in ids.items():
            port = free_port() if role == "callee" else None
            sidecars[role] = SidecarThread(
                SidecarOptions(
                    app_id=app_id,
                    resources_paths=[tmp / "res"],
                    app_port=port,
                    registry_dir=tmp / "reg",
                    config_file=config if role == "callee" else None,
                    api_token=tokens[app_id][0],
                    app_api_token=tokens[app_id][1],
                )
            ).start()
            if port:
                env = sidecars[role].options.app_env()
                callee_app = AppProcess(APP, port, env, cwd=REPO, name=app_id).start()
                sidecars[role].wait_app_ready()
        assert callee_app is not None
        yield Pair(sidecars["caller"], sidecars["callee"], sidecars["other"], callee_app, tokens)
    finally:
        if callee_app is not None:
            callee_app.stop()
        for sc in sidecars.values():
            sc.stop()


def invoke(pair: Pair, via: SidecarThread, verb: str, path: str, token: str | None = "own") -> httpx.Response:
    headers = {}
    if token == "own":
        headers["dapr-api-token"] = pair.tokens[via.options.app_id][0]
    elif token is not None:
        headers["dapr-api-token"] = token
    url = f"http://127.0.0.1:{via.http_port}/v1.0/invoke/{pair.callee.options.app_id}/method/{path}"
    return httpx.request(verb, url, headers=headers, timeout=30)


def test_http_api_needs_the_sidecars_token(pair: Pair) -> None:
    base = f"http://127.0.0.1:{pair.caller.http_port}/v1.0"
    assert httpx.get(f"{base}/healthz").status_code == 204  # health checks are exempt, as in daprd
    assert httpx.get(f"{base}/healthz/outbound").status_code == 204
    for headers in (
        {},
        {"dapr-api-token": "wrong"},
        {"dapr-api-token": pair.tokens[pair.callee.options.app_id][0]},
    ):
        refused = httpx.get(f"{base}/metadata", headers=headers)
        assert refused.status_code == 401 and refused.text == "invalid api token\n"  # daprd's http.Error
    ok = httpx.get(f"{base}/metadata", headers={"dapr-api-token": pair.tokens[pair.caller.options.app_id][0]})
    assert ok.status_code == 200


def test_grpc_api_needs_the_sidecars_token(pair: Pair) -> None:
    with grpc.insecure_channel(pair.caller.grpc_address) as channel:
        stub = dapr_pb2_grpc.DaprStub(channel)
        request = api_v1.GetMetadataRequest()
        with pytest.raises(grpc.RpcError) as missing:
            stub.GetMetadata(request)
        assert missing.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert missing.value.details() == "missing api token in request metadata"
        with pytest.raises(grpc.RpcError) as wrong:
            stub.GetMetadata(request, metadata=(("dapr-api-token", "wrong"),))
        assert wrong.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert wrong.value.details() == "authentication error: api token mismatch"
        token = pair.tokens[pair.caller.options.app_id][0]
        assert (
            stub.GetMetadata(request, metadata=(("dapr-api-token", token),)).id == pair.caller.options.app_id
        )


def test_the_callee_app_gets_its_own_app_token(pair: Pair) -> None:
    resp = invoke(pair, pair.caller, "POST", "echo/open/x")
    assert resp.status_code == 200
    body = resp.json()
    assert body["app_token"] == pair.tokens[pair.callee.options.app_id][1]  # never the caller's tokens
    assert body["caller"] == pair.caller.options.app_id


def test_access_control_allows_what_the_policy_names(pair: Pair) -> None:
    assert invoke(pair, pair.caller, "GET", "echo/open/a/b/c").status_code == 200  # ** spans segments
    assert invoke(pair, pair.caller, "DELETE", "echo/one/x").status_code == 200  # * verb, one segment
    # HTTP operations match case-insensitively: this passes access control to the app's own 404.
    assert invoke(pair, pair.caller, "GET", "ECHO/Open/Case").status_code == 404


@pytest.mark.parametrize(
    ("via", "verb", "path"),
    [
        ("caller", "DELETE", "echo/open/x"),  # verb not listed: the policy's default action (deny)
        ("caller", "GET", "echo/one/x/y"),  # * is one segment only
        ("caller", "GET", "echo/open/secret"),  # the more specific operation decides
        ("caller", "POST", "echo/open/secret"),  # ... and names GET only: the policy's default action
        ("caller", "GET", "echo/elsewhere"),  # no operation matches
        ("other", "GET", "echo/open/x"),  # no policy for this app: the global default (deny)
    ],
)
def test_access_control_denies_with_daprds_error_and_the_app_never_sees_it(
    pair: Pair, via: str, verb: str, path: str
) -> None:
    sidecar = pair.caller if via == "caller" else pair.other
    before = pair.echoed()
    resp = invoke(pair, sidecar, verb, path)
    assert resp.status_code == 403
    identity = f"spiffe://public/ns/default/{sidecar.options.app_id}"
    assert resp.json() == {
        "errorCode": "ERR_DIRECT_INVOKE",
        "message": (
            f"failed to invoke, id: {pair.callee.options.app_id}, err: rpc error: code = PermissionDenied "
            f"desc = access control policy has denied access to id: {identity} "
            f"operation: /{path} verb: {verb}"
        ),
    }
    assert pair.echoed() == before


def test_access_control_denial_through_the_sdk(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAPR_HTTP_PORT", str(pair.other.http_port))
    monkeypatch.setenv("DAPR_GRPC_PORT", str(pair.other.grpc_port))
    monkeypatch.setenv("DAPR_API_TOKEN", pair.tokens[pair.other.options.app_id][0])
    before = pair.echoed()
    with DaprClient() as client, pytest.raises(DaprHttpError) as denied:
        client.invoke_method(pair.callee.options.app_id, "echo/open/x", http_verb="GET")
    assert denied.value.status_code == 403 and denied.value.error_code == "ERR_DIRECT_INVOKE"
    assert "PermissionDenied" in json.loads(denied.value.raw_response_bytes or b"{}")["message"]
    assert pair.echoed() == before


def test_a_forged_sidecar_call_is_refused(pair: Pair) -> None:
    """A process that claims to be the caller's sidecar, without the run's trust key, gets nowhere."""
    before = pair.echoed()
    url = f"http://127.0.0.1:{pair.callee.http_port}/localdapr-internal/invoke/echo/open/x"
    headers = {
        "localdapr-caller-identity": f"spiffe://public/ns/default/{pair.caller.options.app_id}",
        "localdapr-sidecar-auth": "0" * 64,
        "localdapr-verb": "GET",
    }
    assert httpx.post(url, headers=headers).status_code == 401
    assert pair.echoed() == before
