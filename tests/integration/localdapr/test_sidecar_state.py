"""State through localdapr with the official SDK, against in-memory, SQLite and real Redis stores."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.clients.grpc._state import Concurrency, StateItem, StateOptions

from localdapr.sidecar import SidecarOptions
from localdapr.testing import SidecarThread, wait_until
from tests.integration.localdapr.components import STATE_PROFILES, state_component, unique, write

pytestmark = pytest.mark.sidecar


@pytest.fixture(params=STATE_PROFILES)
def profile(request: pytest.FixtureRequest) -> str:
    if request.param == "redis":
        request.getfixturevalue("redis_url")
    return str(request.param)


def start_sidecar(folder: Path, app_id: str) -> SidecarThread:
    return SidecarThread(
        SidecarOptions(app_id=app_id, resources_paths=[folder], registry_dir=folder / "reg")
    ).start()


@pytest.fixture
def sidecar(profile: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[SidecarThread]:
    redis = request.getfixturevalue("redis_url") if profile == "redis" else None
    write(tmp_path / "res", "state.yaml", state_component(profile, tmp_path, redis=redis))
    sc = start_sidecar(tmp_path / "res", unique("app"))
    yield sc
    sc.stop()


@pytest.fixture
def client(sidecar: SidecarThread, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaprClient]:
    # The SDK's health check reads DAPR_HTTP_PORT from the environment (live in SDK 1.19).
    monkeypatch.setenv("DAPR_HTTP_PORT", str(sidecar.http_port))
    monkeypatch.setenv("DAPR_GRPC_PORT", str(sidecar.grpc_port))
    with DaprClient() as c:
        yield c


def test_round_trip_and_missing_key(client: DaprClient) -> None:
    client.save_state("statestore", "order-1", json.dumps({"qty": 3}))
    got = client.get_state("statestore", "order-1")
    assert json.loads(got.data) == {"qty": 3}
    assert got.etag
    missing = client.get_state("statestore", "nope")
    assert missing.data == b"" and missing.etag == ""


def test_etag_changes_and_conflicts_are_aborted(client: DaprClient) -> None:
    client.save_state("statestore", "k", "v1")
    first = client.get_state("statestore", "k").etag
    client.save_state("statestore", "k", "v2", etag=first)
    second = client.get_state("statestore", "k").etag
    assert second != first
    with pytest.raises(DaprGrpcError) as info:
        client.save_state("statestore", "k", "v3", etag=first)  # stale etag
    assert info.value.code() == grpc.StatusCode.ABORTED
    assert client.get_state("statestore", "k").data == b"v2"
    with pytest.raises(DaprGrpcError) as info:
        client.save_state("statestore", "k", "v3", etag="not-a-number")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_first_write_concurrency(client: DaprClient) -> None:
    first_write = StateOptions(concurrency=Concurrency.first_write)
    client.save_state("statestore", "fw", "a", options=first_write)
    with pytest.raises(DaprGrpcError) as info:
        client.save_state("statestore", "fw", "b", options=first_write)
    assert info.value.code() == grpc.StatusCode.ABORTED
    client.save_state("statestore", "fw", "c")  # last-write without etag wins
    assert client.get_state("statestore", "fw").data == b"c"


def test_delete_with_etag(client: DaprClient) -> None:
    client.save_state("statestore", "d", "x")
    etag = client.get_state("statestore", "d").etag
    with pytest.raises(DaprGrpcError):
        client.delete_state("statestore", "d", etag=str(int(etag) + 7))
    client.delete_state("statestore", "d", etag=etag)
    assert client.get_state("statestore", "d").data == b""


def test_transactions_are_all_or_nothing(client: DaprClient) -> None:
    client.save_state("statestore", "t1", "old")
    client.save_state("statestore", "gone", "x")
    client.execute_state_transaction(
        "statestore",
        [
            TransactionalStateOperation(key="t1", data="new"),
            TransactionalStateOperation(key="t2", data="fresh"),
            TransactionalStateOperation(key="gone", operation_type=TransactionOperationType.delete),
        ],
    )
    assert client.get_state("statestore", "t1").data == b"new"
    assert client.get_state("statestore", "t2").data == b"fresh"
    assert client.get_state("statestore", "gone").data == b""
    with pytest.raises(DaprGrpcError):
        client.execute_state_transaction(
            "statestore",
            [
                TransactionalStateOperation(key="t1", data="should-not-apply"),
                TransactionalStateOperation(key="t2", data="nor-this", etag="12345"),
            ],
        )
    assert client.get_state("statestore", "t1").data == b"new"
    assert client.get_state("statestore", "t2").data == b"fresh"


def test_bulk_save_and_get(client: DaprClient) -> None:
    client.save_bulk_state("statestore", [StateItem(key=f"b{i}", value=f"v{i}") for i in range(5)])
    items = client.get_bulk_state("statestore", ["b0", "b3", "missing"]).items
    by_key = {i.key: i for i in items}
    assert by_key["b0"].data == b"v0" and by_key["b3"].data == b"v3"
    assert by_key["missing"].data == b""


def test_ttl_expires(client: DaprClient) -> None:
    client.save_state("statestore", "ttl", "short", state_metadata={"ttlInSeconds": "1"})
    got = client.get_state("statestore", "ttl")
    assert got.data == b"short"
    assert "ttlExpireTime" in got.metadata if hasattr(got, "metadata") else True
    wait_until(lambda: client.get_state("statestore", "ttl").data == b"", timeout=10, what="ttl expiry")
    client.save_state("statestore", "keep", "long")
    assert client.get_state("statestore", "keep").data == b"long"


def test_unknown_store_is_invalid_argument(client: DaprClient) -> None:
    with pytest.raises(DaprGrpcError) as info:
        client.get_state("no-such-store", "k")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no-such-store" in str(info.value.details())


@pytest.mark.parametrize("strategy", ["appid", "name", "none"])
def test_key_prefix_strategies(
    profile: str,
    strategy: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two apps on one store: appid isolates them, name and none share keys."""
    redis = request.getfixturevalue("redis_url") if profile == "redis" else None
    write(
        tmp_path / "res",
        "state.yaml",
        state_component(profile, tmp_path, name="shared", redis=redis, extra={"keyPrefix": strategy}),
    )
    a = start_sidecar(tmp_path / "res", unique("a"))
    b = start_sidecar(tmp_path / "res", unique("b"))
    key = unique("k")
    try:
        monkeypatch.setenv("DAPR_HTTP_PORT", str(a.http_port))
        with DaprClient(address=a.grpc_address) as ca, DaprClient(address=b.grpc_address) as cb:
            ca.save_state("shared", key, "from-a")
            seen_by_b = cb.get_state("shared", key).data
            assert seen_by_b == (b"" if strategy == "appid" else b"from-a")
            # The physical key follows Dapr's layout.
            store = a.sidecar.runtime.states["shared"].store  # type: ignore[union-attr]
            expected = {"appid": f"{a.options.app_id}||{key}", "name": f"shared||{key}", "none": key}[
                strategy
            ]
            assert a.call(store.get(expected)) is not None
            if strategy != "none":
                with pytest.raises(DaprGrpcError):
                    ca.save_state("shared", "bad||key", "x")  # "||" is reserved in keys
    finally:
        a.stop()
        b.stop()
