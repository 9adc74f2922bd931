"""Secrets (file and env stores, secretKeyRef) and the errors for component files localdapr cannot use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import httpx
import pytest
from dapr.clients import DaprClient

from localdapr.components.spec import load_resources
from localdapr.errors import ComponentError
from localdapr.sidecar import Sidecar, SidecarOptions
from localdapr.testing import SidecarThread
from tests.integration.localdapr.components import component, write

pytestmark = pytest.mark.sidecar

SECRETS = {"db": {"password": "s3cret", "user": "vigil"}, "api-key": "k-123"}


def start(res: Path, app_id: str = "secrets-app") -> SidecarThread:
    return SidecarThread(
        SidecarOptions(app_id=app_id, resources_paths=[res], registry_dir=res / "reg")
    ).start()


@pytest.fixture
def secret_files(tmp_path: Path) -> Path:
    res = tmp_path / "res"
    write(res, "secrets.json", json.dumps(SECRETS))
    write(
        res,
        "file.yaml",
        component("filestore", "secretstores.local.file", {"secretsFile": str(res / "secrets.json")}),
    )
    write(
        res,
        "multi.yaml",
        component(
            "multistore",
            "secretstores.local.file",
            {"secretsFile": str(res / "secrets.json"), "multiValued": "true"},
        ),
    )
    write(res, "env.yaml", component("envstore", "secretstores.local.env", {"prefix": "VIGILTEST_"}))
    return res


def test_file_store_flattens_nested_keys(secret_files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sc = start(secret_files)
    try:
        monkeypatch.setenv("DAPR_HTTP_PORT", str(sc.http_port))
        with DaprClient(address=sc.grpc_address) as c:
            assert c.get_secret("filestore", "db:password").secret == {"db:password": "s3cret"}
            assert c.get_secret("multistore", "db").secret == {"password": "s3cret", "user": "vigil"}
            bulk = c.get_bulk_secret("filestore").secrets
            assert bulk["api-key"] == {"api-key": "k-123"} and bulk["db:user"] == {"db:user": "vigil"}
            with pytest.raises(grpc.RpcError) as info:
                c.get_secret("filestore", "missing")
            assert info.value.code() == grpc.StatusCode.INTERNAL
            with pytest.raises(grpc.RpcError) as info:
                c.get_secret("nostore", "x")
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        http = httpx.get(f"http://127.0.0.1:{sc.http_port}/v1.0/secrets/filestore/api-key")
        assert http.json() == {"api-key": "k-123"}
    finally:
        sc.stop()


def test_env_store_with_prefix(secret_files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGILTEST_TOKEN", "from-env")
    monkeypatch.setenv("OTHER_TOKEN", "hidden")
    sc = start(secret_files)
    try:
        monkeypatch.setenv("DAPR_HTTP_PORT", str(sc.http_port))
        with DaprClient(address=sc.grpc_address) as c:
            assert c.get_secret("envstore", "TOKEN").secret == {"TOKEN": "from-env"}
            assert "OTHER_TOKEN" not in c.get_bulk_secret("envstore").secrets
    finally:
        sc.stop()


def test_secret_key_ref_resolves_component_metadata(secret_files: Path) -> None:
    extra = "    - name: password\n      secretKeyRef:\n        name: db:password\n        key: db:password\n"
    write(
        secret_files,
        "state.yaml",
        component("statestore", "state.in-memory", {}, secret_store="filestore", extra_entries=extra),
    )
    sc = start(secret_files)
    try:
        spec = sc.sidecar.runtime.states["statestore"].spec  # type: ignore[union-attr]
        assert spec.metadata["password"] == "s3cret"
    finally:
        sc.stop()


def _start_error(res: Path) -> str:
    async def go() -> None:
        sidecar = Sidecar(SidecarOptions(app_id="bad", resources_paths=[res], registry_dir=res / "reg"))
        await sidecar.start()
        await sidecar.stop()

    import asyncio

    with pytest.raises(ComponentError) as info:
        asyncio.run(go())
    return str(info.value)


def test_unknown_component_type_names_file_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "weird.yaml", component("statestore", "state.cassandra-9000", {}))
    message = _start_error(tmp_path)
    assert str(path) in message and "spec.type" in message and "state.cassandra-9000" in message


def test_missing_required_metadata_names_file_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "redis.yaml", component("statestore", "state.redis", {}))
    message = _start_error(tmp_path)
    assert str(path) in message and "redisHost" in message


def test_malformed_yaml_names_the_file(tmp_path: Path) -> None:
    write(tmp_path, "broken.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: [unclosed\n")
    with pytest.raises(ComponentError, match="broken.yaml"):
        load_resources([tmp_path])


def test_component_without_version_loads_as_daprd_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """daprd reads a missing spec.version as the type's initial version; metadata reports it as written."""
    write(
        tmp_path,
        "nover.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: statestore}\n"
        "spec: {type: state.in-memory, metadata: []}\n",
    )
    sc = start(tmp_path)
    try:
        monkeypatch.setenv("DAPR_HTTP_PORT", str(sc.http_port))
        with DaprClient(address=sc.grpc_address) as c:
            c.save_state("statestore", "k", "v")
            assert c.get_state("statestore", "k").data == b"v"
            registered = {comp.name: comp for comp in c.get_metadata().registered_components}
        assert registered["statestore"].type == "state.in-memory" and registered["statestore"].version == ""
    finally:
        sc.stop()


def test_unknown_component_version_names_file_and_version(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "v2.yaml",
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: s}\n"
        "spec: {type: state.in-memory, version: v2, metadata: []}\n",
    )
    message = _start_error(tmp_path)
    assert str(path) in message and "spec.version 'v2'" in message


def test_secret_key_ref_to_missing_secret(tmp_path: Path) -> None:
    write(tmp_path, "secrets.json", "{}")
    write(
        tmp_path,
        "file.yaml",
        component("filestore", "secretstores.local.file", {"secretsFile": str(tmp_path / "secrets.json")}),
    )
    extra = "    - name: redisPassword\n      secretKeyRef:\n        name: nope\n"
    write(
        tmp_path,
        "state.yaml",
        component("statestore", "state.in-memory", {}, secret_store="filestore", extra_entries=extra),
    )
    message = _start_error(tmp_path)
    assert "state.yaml" in message and "redisPassword" in message and "nope" in message


def test_scopes_hide_components_from_other_apps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "state.yaml", component("private", "state.in-memory", {}, scopes=["owner"]))
    other = start(tmp_path, "someone-else")
    owner = start(tmp_path, "owner")
    try:
        monkeypatch.setenv("DAPR_HTTP_PORT", str(other.http_port))
        assert "private" not in other.sidecar.runtime.states  # type: ignore[union-attr]
        assert "private" in owner.sidecar.runtime.states  # type: ignore[union-attr]
        with DaprClient(address=other.grpc_address) as c, pytest.raises(Exception, match="not"):
            c.get_state("private", "k")
    finally:
        other.stop()
        owner.stop()


def test_sidecar_cli_exits_with_clear_message(tmp_path: Path) -> None:
    write(tmp_path, "weird.yaml", component("statestore", "state.nosuch", {}))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "localdapr",
            "sidecar",
            "--app-id",
            "x",
            "--resources-path",
            str(tmp_path),
            "--dapr-http-port",
            "0",
            "--dapr-grpc-port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    assert proc.returncode == 2
    assert "weird.yaml" in proc.stderr and "state.nosuch" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_api_token_is_enforced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path, "state.yaml", component("statestore", "state.in-memory", {}))
    sc = SidecarThread(
        SidecarOptions(
            app_id="tok", resources_paths=[tmp_path], registry_dir=tmp_path / "reg", api_token="t0ken"
        )
    ).start()
    try:
        base = f"http://127.0.0.1:{sc.http_port}/v1.0"
        assert httpx.get(f"{base}/healthz/outbound").status_code == 204  # health is exempt
        assert httpx.get(f"{base}/state/statestore/k").status_code == 401
        assert httpx.get(f"{base}/state/statestore/k", headers={"dapr-api-token": "t0ken"}).status_code == 204
        monkeypatch.setenv("DAPR_HTTP_PORT", str(sc.http_port))
        with (
            DaprClient(address=sc.grpc_address) as c,
            pytest.raises(Exception, match="UNAUTHENTICATED|token"),
        ):
            c.get_state("statestore", "k")
        monkeypatch.setenv("DAPR_API_TOKEN", "t0ken")
        with DaprClient(address=sc.grpc_address) as c:
            c.save_state("statestore", "k", "v")
            assert c.get_state("statestore", "k").data == b"v"
    finally:
        sc.stop()


def test_http_state_api_and_metadata(tmp_path: Path) -> None:
    write(tmp_path, "state.yaml", component("statestore", "state.in-memory", {}))
    sc = start(tmp_path)
    try:
        base = f"http://127.0.0.1:{sc.http_port}/v1.0"
        assert (
            httpx.post(f"{base}/state/statestore", json=[{"key": "h", "value": {"a": 1}}]).status_code == 204
        )
        got = httpx.get(f"{base}/state/statestore/h")
        assert got.json() == {"a": 1} and got.headers["etag"]
        bad = httpx.post(f"{base}/state/statestore", content=b"{not json")
        assert bad.status_code == 400 and bad.json()["errorCode"] == "ERR_MALFORMED_REQUEST"
        missing = httpx.get(f"{base}/state/nostore/h")
        assert missing.status_code == 400 and missing.json()["errorCode"] == "ERR_STATE_STORE_NOT_FOUND"
        meta = httpx.get(f"{base}/metadata").json()
        assert meta["id"] == "secrets-app"
        assert {
            "name": "statestore",
            "type": "state.in-memory",
            "version": "v1",
            "capabilities": ["ETAG", "TRANSACTIONAL", "TTL"],
        } in meta["components"]
    finally:
        sc.stop()


def test_unsupported_grpc_method_is_unimplemented_and_says_so(tmp_path: Path) -> None:
    """A method localdapr lacks (query state) answers UNIMPLEMENTED, naming localdapr."""
    write(tmp_path, "state.yaml", component("statestore", "state.in-memory", {}))
    sc = start(tmp_path)
    try:
        channel = grpc.insecure_channel(sc.grpc_address)
        query_state = channel.unary_unary(
            "/dapr.proto.runtime.v1.Dapr/QueryStateAlpha1",
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        with pytest.raises(grpc.RpcError) as info:
            query_state(b"", timeout=5)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "localdapr does not support" in str(info.value.details())
        assert "QueryStateAlpha1" in str(info.value.details())
        channel.close()
    finally:
        sc.stop()
