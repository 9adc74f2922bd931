"""daprd's rich errors: google.rpc.Status details over gRPC (read by the SDK's DaprGrpcError) and the
same details in the HTTP body, for unknown or unconfigured stores and pubsubs and illegal state keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError

from localdapr.sidecar import SidecarOptions
from localdapr.testing import SidecarThread
from tests.integration.localdapr.components import component, write

pytestmark = pytest.mark.sidecar

APP = "rich-errors"


def start(folder: Path) -> SidecarThread:
    return SidecarThread(
        SidecarOptions(app_id=APP, resources_paths=[folder], registry_dir=folder / "reg")
    ).start()


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[SidecarThread]:
    write(tmp_path / "res", "state.yaml", component("statestore", "state.in-memory", {}))
    write(tmp_path / "res", "pubsub.yaml", component("pubsub", "pubsub.in-memory", {}))
    sc = start(tmp_path / "res")
    try:
        yield sc
    finally:
        sc.stop()


@pytest.fixture
def client(sidecar: SidecarThread, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaprClient]:
    monkeypatch.setenv("DAPR_HTTP_PORT", str(sidecar.http_port))
    with DaprClient(address=sidecar.grpc_address) as c:
        yield c


def test_unknown_state_store(client: DaprClient) -> None:
    with pytest.raises(DaprGrpcError) as info:
        client.get_state("nostore", "k")
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "state store nostore is not found"
    assert err.error_code() == "DAPR_STATE_NOT_FOUND"
    assert err.status_details().error_info == {
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "DAPR_STATE_NOT_FOUND",
        "domain": "dapr.io",
        "metadata": {"appID": APP},
    }
    assert err.status_details().resource_info is None


def test_illegal_state_key(client: DaprClient) -> None:
    with pytest.raises(DaprGrpcError) as info:
        client.save_state("statestore", "a||b", "v")
    err = info.value
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.error_code() == "DAPR_STATE_ILLEGAL_KEY"
    details = err.status_details()
    assert details.resource_info == {
        "@type": "type.googleapis.com/google.rpc.ResourceInfo",
        "resource_type": "state",
        "resource_name": "statestore",
    }
    assert details.bad_request == {
        "@type": "type.googleapis.com/google.rpc.BadRequest",
        "field_violations": [
            {"field": "a||b", "description": "input key/keyPrefix 'a||b' can't contain '||'"}
        ],
    }


def test_unknown_pubsub(client: DaprClient) -> None:
    with pytest.raises(DaprGrpcError) as info:
        client.publish_event("nopubsub", "topic", b"{}")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.value.details() == "pubsub nopubsub is not found"
    assert info.value.error_code() == "DAPR_PUBSUB_NOT_FOUND"


def test_not_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    sc = start(tmp_path / "empty")
    try:
        monkeypatch.setenv("DAPR_HTTP_PORT", str(sc.http_port))
        with DaprClient(address=sc.grpc_address) as c:
            with pytest.raises(DaprGrpcError) as state:
                c.get_state("statestore", "k")
            with pytest.raises(DaprGrpcError) as pubsub:
                c.publish_event("pubsub", "topic", b"{}")
        assert state.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert state.value.error_code() == "DAPR_STATE_NOT_CONFIGURED"
        assert pubsub.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert pubsub.value.error_code() == "DAPR_PUBSUB_NOT_CONFIGURED"
    finally:
        sc.stop()


def test_http_body_carries_the_same_details(sidecar: SidecarThread) -> None:
    base = f"http://127.0.0.1:{sidecar.http_port}/v1.0"
    missing = httpx.get(f"{base}/state/nostore/k")
    assert missing.status_code == 400
    assert missing.json() == {
        "errorCode": "ERR_STATE_STORE_NOT_FOUND",
        "message": "state store nostore is not found",
        "details": [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "DAPR_STATE_NOT_FOUND",
                "domain": "dapr.io",
                "metadata": {"appID": APP},
            }
        ],
    }
    illegal = httpx.post(f"{base}/state/statestore", json=[{"key": "a||b", "value": 1}])
    assert illegal.status_code == 400
    body = illegal.json()
    assert body["errorCode"] == "ERR_MALFORMED_REQUEST"
    assert [d["@type"].rsplit(".", 1)[1] for d in body["details"]] == [
        "BadRequest",
        "ResourceInfo",
        "ErrorInfo",
    ]
    assert (
        body["details"][1]["resource_type"] == "state" and body["details"][1]["resource_name"] == "statestore"
    )
    assert body["details"][2]["reason"] == "DAPR_STATE_ILLEGAL_KEY"
    publish = httpx.post(f"{base}/publish/nopubsub/topic", json={})
    assert publish.status_code == 404 and publish.json()["errorCode"] == "ERR_PUBSUB_NOT_FOUND"
    assert publish.json()["details"][0]["reason"] == "DAPR_PUBSUB_NOT_FOUND"
