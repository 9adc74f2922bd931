"""state.postgresql (v2) through a localdapr sidecar with the official SDK, against the real PostgreSQL.

Each test gets its own tables (a random `tablePrefix` and `metadataTableName`) and drops them
afterwards, so runs never share state. The layout is checked against what daprd's v2 component
creates, so daprd could share the tables.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psycopg
import pytest
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.clients.grpc._state import Concurrency, StateItem, StateOptions

from localdapr.components.spec import ComponentSpec
from localdapr.errors import ComponentError
from localdapr.sidecar import Sidecar, SidecarOptions
from localdapr.state.postgres import PostgresStateStore
from localdapr.testing import SidecarThread, wait_until
from tests.integration.localdapr.components import component, unique, write

pytestmark = pytest.mark.sidecar


@dataclass
class Tables:
    dsn: str
    prefix: str
    metadata: str

    @property
    def state(self) -> str:
        return f"{self.prefix}state"

    def metadata_fields(self) -> dict[str, str]:
        return {"connectionString": self.dsn, "tablePrefix": self.prefix, "metadataTableName": self.metadata}

    def query(self, sql: str, *params: object) -> list[tuple]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            cur = conn.execute(sql, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []


@pytest.fixture
def tables(postgres_dsn: str) -> Iterator[Tables]:
    tag = uuid.uuid4().hex[:8]
    found = Tables(postgres_dsn, f"t{tag}_", f"t{tag}_dapr_metadata")
    yield found
    found.query(f"DROP TABLE IF EXISTS {found.state}, {found.metadata}")


def store_component(tables: Tables, **extra: str) -> str:
    text = component("statestore", "state.postgresql", {**tables.metadata_fields(), **extra})
    return text.replace("version: v1", "version: v2")


@pytest.fixture
def sidecar(tables: Tables, tmp_path: Path) -> Iterator[SidecarThread]:
    write(tmp_path / "res", "state.yaml", store_component(tables, actorStateStore="true"))
    sc = SidecarThread(
        SidecarOptions(
            app_id=unique("app"), resources_paths=[tmp_path / "res"], registry_dir=tmp_path / "reg"
        )
    ).start()
    yield sc
    sc.stop()


@pytest.fixture
def client(sidecar: SidecarThread, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaprClient]:
    monkeypatch.setenv("DAPR_HTTP_PORT", str(sidecar.http_port))
    with DaprClient(address=sidecar.grpc_address) as c:
        yield c


def test_tables_are_daprd_v2_layout(client: DaprClient, tables: Tables, sidecar: SidecarThread) -> None:
    columns = tables.query(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = %s ORDER BY ordinal_position",
        tables.state,
    )
    assert columns == [
        ("key", "text", "NO"),
        ("value", "bytea", "NO"),
        ("etag", "uuid", "NO"),
        ("created_at", "timestamp with time zone", "NO"),
        ("updated_at", "timestamp with time zone", "YES"),
        ("expires_at", "timestamp with time zone", "YES"),
    ]
    indexes = [
        row[0] for row in tables.query("SELECT indexdef FROM pg_indexes WHERE tablename = %s", tables.state)
    ]
    assert any("(expires_at)" in i for i in indexes) and any("(key)" in i for i in indexes)
    assert tables.query(f"SELECT key, value FROM {tables.metadata} ORDER BY key") == [
        ("lock", "lock"),
        (f"migrations-state-v2-{tables.prefix}", "1"),
    ]
    client.save_state("statestore", "order-1", json.dumps({"qty": 3}))
    ((key, value, etag),) = tables.query(f"SELECT key, value, etag::text FROM {tables.state}")
    assert key == f"{sidecar.options.app_id}||order-1" and json.loads(bytes(value)) == {"qty": 3}
    assert client.get_state("statestore", "order-1").etag == etag  # the row's uuid is the etag
    meta = client.get_metadata()
    caps = {c.name: c.capabilities for c in meta.registered_components}["statestore"]
    assert {"ETAG", "TRANSACTIONAL", "TTL", "ACTOR"} <= set(caps)


def test_migrated_tables_are_reused(
    tables: Tables, tmp_path: Path, client: DaprClient, sidecar: SidecarThread
) -> None:
    """A second sidecar of the app (or daprd) finds the migration level done and shares the rows."""
    client.save_state("statestore", "kept", "v")
    second = SidecarThread(
        SidecarOptions(
            app_id=sidecar.options.app_id, resources_paths=[tmp_path / "res"], registry_dir=tmp_path
        )
    ).start()
    try:
        with DaprClient(address=second.grpc_address) as other:
            assert other.get_state("statestore", "kept").data == b"v"
        assert len(tables.query(f"SELECT key FROM {tables.state}")) == 1
    finally:
        second.stop()


def test_etags_conflicts_and_first_write(client: DaprClient) -> None:
    client.save_state("statestore", "k", "v1")
    first = client.get_state("statestore", "k").etag
    uuid.UUID(first)
    client.save_state("statestore", "k", "v2", etag=first)
    second = client.get_state("statestore", "k").etag
    assert second != first
    with pytest.raises(DaprGrpcError) as info:
        client.save_state("statestore", "k", "stale", etag=first)
    assert info.value.code() == grpc.StatusCode.ABORTED
    with pytest.raises(DaprGrpcError) as info:
        client.save_state("statestore", "k", "bad", etag="not-a-uuid")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(DaprGrpcError) as info:
        client.save_state("statestore", "absent", "x", etag=str(uuid.uuid4()))  # etag on a missing key
    assert info.value.code() == grpc.StatusCode.ABORTED
    first_write = StateOptions(concurrency=Concurrency.first_write)
    client.save_state("statestore", "fw", "a", options=first_write)
    with pytest.raises(DaprGrpcError) as info:
        client.save_state("statestore", "fw", "b", options=first_write)
    assert info.value.code() == grpc.StatusCode.ABORTED
    client.save_state("statestore", "fw", "c")  # last-write without an etag wins
    assert client.get_state("statestore", "fw").data == b"c"
    assert client.get_state("statestore", "k").data == b"v2"


def test_delete_with_etag(client: DaprClient) -> None:
    client.save_state("statestore", "d", "x")
    etag = client.get_state("statestore", "d").etag
    with pytest.raises(DaprGrpcError) as info:
        client.delete_state("statestore", "d", etag=str(uuid.uuid4()))
    assert info.value.code() == grpc.StatusCode.ABORTED
    client.delete_state("statestore", "d", etag=etag)
    assert client.get_state("statestore", "d").data == b""
    client.delete_state("statestore", "never-there")  # no etag: deleting nothing is fine


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
                TransactionalStateOperation(key="t2", data="nor-this", etag=str(uuid.uuid4())),
            ],
        )
    assert client.get_state("statestore", "t1").data == b"new"
    assert client.get_state("statestore", "t2").data == b"fresh"


def test_bulk_get_and_large_values(client: DaprClient) -> None:
    """Bulk get in one query; a model-sized value (an ONNX file) round-trips byte for byte."""
    model = bytes(range(256)) * 8192  # 2 MiB
    client.save_bulk_state(
        "statestore", [StateItem(key=f"b{i}", value=f"v{i}") for i in range(5)] + [StateItem("model", model)]
    )
    items = {i.key: i for i in client.get_bulk_state("statestore", ["b0", "b3", "missing", "model"]).items}
    assert items["b0"].data == b"v0" and items["b3"].data == b"v3"
    assert items["missing"].data == b"" and items["model"].data == model


def test_ttl_expires_and_cleanup_deletes(client: DaprClient, tables: Tables, sidecar: SidecarThread) -> None:
    client.save_state("statestore", "ttl", "short", state_metadata={"ttlInSeconds": "1"})
    got = client.get_state("statestore", "ttl")
    assert got.data == b"short"
    (expires,) = tables.query(f"SELECT expires_at FROM {tables.state} WHERE key LIKE '%%||ttl'")[0]
    assert expires is not None
    wait_until(lambda: client.get_state("statestore", "ttl").data == b"", timeout=10, what="ttl expiry")
    client.save_state("statestore", "ttl", "again", options=StateOptions(concurrency=Concurrency.first_write))
    assert client.get_state("statestore", "ttl").data == b"again", "first-write replaces an expired row"
    client.save_state("statestore", "gone-soon", "x", state_metadata={"ttlInSeconds": "1"})
    wait_until(lambda: client.get_state("statestore", "gone-soon").data == b"", timeout=10, what="expiry")
    store = sidecar.sidecar.runtime.states["statestore"].store  # type: ignore[union-attr]
    assert sidecar.call(store.cleanup_expired()) == 1
    assert [r[0].split("||")[-1] for r in tables.query(f"SELECT key FROM {tables.state}")] == ["ttl"]
    assert sidecar.call(store.cleanup_expired()) == 0, "the next cleanup waits for cleanupInterval"


def test_unreachable_server_and_wrong_version_stop_the_start(tmp_path: Path, tables: Tables) -> None:
    res = tmp_path / "res"
    write(res, "state.yaml", store_component(tables, connectionString="host=127.0.0.1 port=1 user=postgres"))
    with pytest.raises(ComponentError, match=r"failed to connect to the database at 127\.0\.0\.1:1"):
        asyncio.run(Sidecar(SidecarOptions(app_id="x", resources_paths=[res], registry_dir=tmp_path)).start())
    write(res, "state.yaml", store_component(tables).replace("version: v2", "version: v1"))
    with pytest.raises(
        ComponentError, match=r"spec.version 'v1' is not supported for state.postgresql \(use v2\)"
    ):
        asyncio.run(Sidecar(SidecarOptions(app_id="x", resources_paths=[res], registry_dir=tmp_path)).start())


@pytest.mark.parametrize(
    ("metadata", "message"),
    [
        ({}, "'connectionString' is missing"),
        ({"connectionString": "host=x", "tablePrefix": "a;drop"}, "tablePrefix"),
        ({"connectionString": "host=x", "timeout": "500ms"}, "must be greater than 1s"),
        ({"connectionString": "host=x", "queryExecMode": "fast"}, "queryExecMode"),
    ],
)
def test_bad_metadata_is_refused(metadata: dict[str, str], message: str) -> None:
    spec = ComponentSpec("s", "state.postgresql", "v2", [], [], None, Path("s.yaml"), metadata=metadata)
    with pytest.raises(ComponentError, match=message):
        PostgresStateStore.from_spec(spec)
