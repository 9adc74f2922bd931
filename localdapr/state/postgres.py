"""state.postgresql (v2): state in a real PostgreSQL, in the table layout daprd's v2 component creates.

The state table is `<tablePrefix>state`:

    key text PRIMARY KEY, value bytea, etag uuid DEFAULT gen_random_uuid(),
    created_at timestamptz DEFAULT now(), updated_at timestamptz, expires_at timestamptz

with an index on expires_at, created by migration 1 of components-contrib's `state/postgresql/v2`;
the migration level is kept in the metadata table (`metadataTableName`, default `dapr_metadata`, rows
`key`/`value` text) under `migrations-state-v2-<tablePrefix>`, and migrations run under a row lock on
its `lock` row. Because localdapr writes that level too, a daprd pointed at the same database finds
the table migrated and shares it (same etags, same expiry), and the other way round.

Etags are the row's uuid, new on every write. A write with an etag is an UPDATE matching key, etag
and a live row; first-write without an etag inserts, or replaces only an expired row; a row past
`expires_at` is invisible to reads and deleted every `cleanupInterval` (default 1h; 0 disables) by
whichever sidecar (or daprd) finds the last cleanup old enough. Transactions are one database
transaction. Every operation is bounded by `timeout` (default 20s).

Metadata as daprd's v2: `connectionString` (libpq key=value or URL; required) and the individual
`host`, `hostaddr`, `port`, `database`, `user`, `password`, `sslRootCert` that override it;
`tablePrefix` (may start with a schema: `vigil.`), `metadataTableName`, `timeout`, `cleanupInterval`,
`maxConns` (default the greater of 4 and the CPU count), `connectionMaxIdleTime`, `queryExecMode`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool

from localdapr.components.spec import ComponentSpec
from localdapr.durations import parse_go_duration
from localdapr.perloop import PerLoop
from localdapr.state.base import (
    CAP_ETAG,
    CAP_TRANSACTIONAL,
    CAP_TTL,
    FIRST_WRITE,
    Concurrency,
    EtagInvalid,
    EtagMismatch,
    GetResult,
    StateItem,
    StateStore,
    StateStoreError,
    TransactionOp,
)

log = logging.getLogger("localdapr.state.postgresql")

# A table name as contrib formats it into its queries (unquoted, so PostgreSQL folds it to lower case),
# optionally behind a schema. Anything else would be SQL injection through a component file.
_TABLE = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z_][A-Za-z0-9_]*$")
_PREFIX = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*\.)?[A-Za-z0-9_]*$")
# daprd's individual connection fields, as libpq names them.
_CONN_FIELDS = {
    "host": "host",
    "hostaddr": "hostaddr",
    "port": "port",
    "database": "dbname",
    "user": "user",
    "password": "password",
    "sslRootCert": "sslrootcert",
}
_QUERY_EXEC_MODES = ("", "cache_statement", "cache_describe", "describe_exec", "exec", "simple_protocol")
_UNSUPPORTED_AUTH = ("useAzureAD", "useAWSIAM")
MIGRATION_LEVEL = 1


@dataclass(slots=True)
class PostgresSettings:
    conninfo: str
    table_prefix: str = ""
    metadata_table: str = "dapr_metadata"
    timeout: float = 20.0
    cleanup_interval: float | None = 3600.0  # None = never
    max_conns: int = 0  # 0 = the greater of 4 and the CPU count, as pgx
    max_idle: float | None = None
    prepare: bool = True  # False for queryExecMode exec / simple_protocol (PgBouncer in front)

    @classmethod
    def from_spec(cls, spec: ComponentSpec) -> PostgresSettings:
        """The component's metadata, as daprd's postgresql state store reads it."""
        for key in _UNSUPPORTED_AUTH:
            if spec.get_bool(key):
                raise spec.fail(f"metadata field {key!r}: cloud identity authentication is not supported")
        base = spec.get("connectionString")
        overrides = {libpq: spec.get(key) for key, libpq in _CONN_FIELDS.items() if spec.get(key)}
        if not base and not overrides:
            spec.require("connectionString")
        try:
            conninfo = make_conninfo(base, **overrides)
        except psycopg.ProgrammingError as exc:
            raise spec.fail(
                f"metadata field 'connectionString' is not a valid connection string: {exc}"
            ) from None
        prefix = spec.get("tablePrefix")
        if not _PREFIX.match(prefix):
            raise spec.fail(
                f"metadata field 'tablePrefix' must be [schema.]identifier characters, got {prefix!r}"
            )
        metadata_table = spec.get("metadataTableName", "dapr_metadata")
        if not _TABLE.match(metadata_table):
            raise spec.fail(
                f"metadata field 'metadataTableName' must be [schema.]name, got {metadata_table!r}"
            )
        mode = spec.get("queryExecMode")
        if mode not in _QUERY_EXEC_MODES:
            raise spec.fail(
                f"metadata field 'queryExecMode' must be one of {', '.join(_QUERY_EXEC_MODES[1:])}"
            )

        def duration(key: str, default: str) -> float:
            try:
                return parse_go_duration(spec.get(key, default))
            except ValueError as exc:
                raise spec.fail(f"metadata field {key!r}: {exc}") from None

        timeout = duration("timeout", "20s")
        if timeout < 1:
            raise spec.fail("invalid value for 'timeout': must be greater than 1s")
        cleanup = duration("cleanupInterval", "1h")
        idle = duration("connectionMaxIdleTime", "0")
        return cls(
            conninfo=conninfo,
            table_prefix=prefix,
            metadata_table=metadata_table,
            timeout=timeout,
            cleanup_interval=cleanup if cleanup > 0 else None,
            max_conns=max(spec.get_int("maxConns", 0), 0),
            max_idle=idle if idle > 0 else None,
            prepare=mode not in ("exec", "simple_protocol"),
        )

    @property
    def table(self) -> str:
        return f"{self.table_prefix}state"

    @property
    def address(self) -> str:
        """host:port/database for messages (never the password)."""
        try:
            params = conninfo_to_dict(self.conninfo)
        except psycopg.ProgrammingError:
            return "?"
        host = params.get("host") or params.get("hostaddr") or "localhost"
        return f"{host}:{params.get('port') or 5432}/{params.get('dbname') or params.get('user') or ''}"


class PostgresStateStore(StateStore):
    capabilities = (CAP_ETAG, CAP_TRANSACTIONAL, CAP_TTL)

    def __init__(self, settings: PostgresSettings) -> None:
        self.settings = settings
        self._pools: PerLoop[AsyncConnectionPool] = PerLoop("state.postgresql", self._open_pool, _close_pool)
        self._cleanup: asyncio.Task[None] | None = None

    @classmethod
    def from_spec(cls, spec: ComponentSpec) -> PostgresStateStore:
        return cls(PostgresSettings.from_spec(spec))

    # ------------------------------------------------------------------ lifecycle
    def attach_loop(self) -> None:
        self._pools.attach()

    async def detach_loop(self) -> None:
        # The cleanup task lives on the loop that initialised the store; it ends with that loop's last
        # user (only tests run sidecars on several loops; expired rows stay invisible meanwhile).
        if await self._pools.detach() and self._cleanup is not None:
            if self._cleanup.get_loop() is asyncio.get_running_loop():
                self._cleanup.cancel()
                await asyncio.gather(self._cleanup, return_exceptions=True)
                self._cleanup = None

    async def init(self) -> None:
        """Connect once, run the migrations, and start the expired-row cleanup."""
        self._pools.closed = False
        try:
            async with asyncio.timeout(self.settings.timeout):
                conn = await psycopg.AsyncConnection.connect(self.settings.conninfo, autocommit=True)
        except (psycopg.Error, OSError, TimeoutError) as exc:
            reason = str(exc).strip() or type(exc).__name__
            raise StateStoreError(
                f"state.postgresql: failed to connect to the database at {self.settings.address} "
                f"(connectionString): {reason}"
            ) from None
        try:
            await self._migrate(conn)
        except psycopg.Error as exc:
            raise StateStoreError(
                f"state.postgresql: failed to migrate {self.settings.table}: {exc}"
            ) from exc
        finally:
            await conn.close()
        if self.settings.cleanup_interval is not None:
            self._cleanup = asyncio.create_task(
                self._cleanup_loop(), name=f"postgresql cleanup {self.settings.table}"
            )

    async def close(self) -> None:
        if self._cleanup is not None:
            self._cleanup.cancel()
            await asyncio.gather(self._cleanup, return_exceptions=True)
            self._cleanup = None
        await self._pools.close()

    async def _open_pool(self) -> AsyncConnectionPool:
        kwargs: dict[str, Any] = {"autocommit": True}
        if not self.settings.prepare:
            kwargs["prepare_threshold"] = None
        pool = AsyncConnectionPool(
            self.settings.conninfo,
            min_size=1,
            max_size=self.settings.max_conns or max(4, os.cpu_count() or 1),
            max_idle=self.settings.max_idle or 600.0,
            timeout=self.settings.timeout,
            kwargs=kwargs,
            open=False,
            name=f"state.postgresql {self.settings.table}",
        )
        await pool.open(wait=True, timeout=self.settings.timeout)
        return pool

    async def _migrate(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """contrib's postgres migrations: metadata table, a row lock, then the missing migrations."""
        meta, table = self.settings.metadata_table, self.settings.table
        for attempt in range(3):
            try:
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {meta} (key text NOT NULL PRIMARY KEY, value text NOT NULL)"
                )
                break
            except pg_errors.UniqueViolation:
                # Two sidecars creating the table at once collide on pg_type; the loser retries (as contrib).
                if attempt == 2:
                    raise
                await asyncio.sleep(0.05)
        await conn.execute(
            f"INSERT INTO {meta} (key, value) VALUES ('lock', 'lock') ON CONFLICT (key) DO NOTHING"
        )
        version_key = f"migrations-state-v2-{self.settings.table_prefix}"
        async with conn.transaction():
            await conn.execute(f"SELECT value FROM {meta} WHERE key = 'lock' FOR UPDATE")
            row = await (
                await conn.execute(f"SELECT value FROM {meta} WHERE key = %s", (version_key,))
            ).fetchone()
            level = int(row[0]) if row else 0
            if level < 1:
                log.info("state.postgresql: creating state table %s", table)
                await conn.execute(
                    f"CREATE TABLE {table} (key text NOT NULL PRIMARY KEY, value bytea NOT NULL, "
                    "etag uuid NOT NULL DEFAULT gen_random_uuid(), "
                    "created_at timestamp with time zone NOT NULL DEFAULT now(), "
                    "updated_at timestamp with time zone, expires_at timestamp with time zone)"
                )
                await conn.execute(f"CREATE INDEX ON {table} (expires_at)")
            if level < MIGRATION_LEVEL:
                await conn.execute(
                    f"INSERT INTO {meta} (key, value) VALUES (%(k)s, %(v)s) "
                    "ON CONFLICT (key) DO UPDATE SET value = %(v)s",
                    {"k": version_key, "v": str(MIGRATION_LEVEL)},
                )

    async def _cleanup_loop(self) -> None:
        interval = self.settings.cleanup_interval
        assert interval is not None
        while True:
            await asyncio.sleep(interval)
            try:
                deleted = await self.cleanup_expired()
                if deleted:
                    log.info(
                        "state.postgresql: deleted %d expired rows from %s", deleted, self.settings.table
                    )
            except (psycopg.Error, OSError, TimeoutError) as exc:
                log.warning("state.postgresql: cleaning up expired rows failed: %s", exc)

    async def cleanup_expired(self) -> int:
        """Delete expired rows unless another instance did so within the last interval (as contrib's GC)."""
        meta = self.settings.metadata_table
        # A little under the interval, so instances ticking at the same pace still take turns.
        min_ms = int((self.settings.cleanup_interval or 0) * 1000 * 0.95)
        async with self._connection() as conn:
            claimed = await conn.execute(
                f"INSERT INTO {meta} (key, value) VALUES (%s, now()::text) ON CONFLICT (key) DO UPDATE "
                f"SET value = now()::text WHERE (EXTRACT('epoch' FROM now() - {meta}.value::timestamp with "
                "time zone) * 1000)::bigint > %s",
                (f"last-cleanup-state-v2-{meta}", min_ms),
            )
            if claimed.rowcount != 1:
                return 0
            done = await conn.execute(
                f"DELETE FROM {self.settings.table} WHERE expires_at IS NOT NULL AND expires_at < now()"
            )
            return max(done.rowcount, 0)

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection of the running loop, for one operation bounded by `timeout`."""
        async with asyncio.timeout(self.settings.timeout):
            try:
                pool = await self._pools.get()
            except RuntimeError as exc:
                raise StateStoreError(str(exc)) from None
            async with pool.connection() as conn:
                yield conn

    # ------------------------------------------------------------------ interface
    async def get(self, key: str) -> GetResult | None:
        return (await self.bulk_get([key]))[0]

    async def bulk_get(self, keys: Sequence[str]) -> list[GetResult | None]:
        if not keys:
            return []
        async with self._connection() as conn:
            cur = await conn.execute(
                f"SELECT key, value, etag, expires_at FROM {self.settings.table} "
                "WHERE key = ANY(%s) AND (expires_at IS NULL OR expires_at >= now())",
                (list(keys),),
            )
            rows = await cur.fetchall()
        found = {
            row[0]: GetResult(
                data=bytes(row[1]),
                etag=str(row[2]),
                # RFC 3339 in whole seconds, as contrib formats it (Go's time.RFC3339).
                metadata={"ttlExpireTime": row[3].astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
                if row[3] is not None
                else {},
            )
            for row in rows
        }
        return [found.get(k) for k in keys]

    async def set(self, item: StateItem) -> None:
        _check_etag(item.etag)
        async with self._connection() as conn:
            await self._write(conn, TransactionOp("upsert", item))

    async def delete(self, key: str, etag: str | None = None, concurrency: Concurrency | None = None) -> None:
        _check_etag(etag)
        async with self._connection() as conn:
            await self._write(
                conn, TransactionOp("delete", StateItem(key=key, etag=etag, concurrency=concurrency))
            )

    async def transact(self, ops: Sequence[TransactionOp]) -> None:
        if not ops:
            return
        for op in ops:
            _check_etag(op.item.etag)  # EtagInvalid before anything reaches the database
        async with self._connection() as conn, conn.transaction():
            for op in ops:
                await self._write(conn, op)

    async def keys_with_prefix(self, prefix: str) -> list[str]:
        async with self._connection() as conn:
            cur = await conn.execute(
                f"SELECT key FROM {self.settings.table} "
                "WHERE starts_with(key, %s) AND (expires_at IS NULL OR expires_at >= now())",
                (prefix,),
            )
            return [str(row[0]) for row in await cur.fetchall()]

    # ------------------------------------------------------------------ writes, as contrib's v2 queries
    async def _write(self, conn: psycopg.AsyncConnection[Any], op: TransactionOp) -> None:
        table, item = self.settings.table, op.item
        if op.operation == "delete":
            if item.etag:
                cur = await conn.execute(
                    f"DELETE FROM {table} WHERE key = %s AND etag = %s", (item.key, item.etag)
                )
                if cur.rowcount != 1:
                    raise EtagMismatch(f"possible etag mismatch. error from state store: etag {item.etag!r}")
            else:
                await conn.execute(f"DELETE FROM {table} WHERE key = %s", (item.key,))
            return
        ttl = item.ttl_seconds
        # The interval is computed in SQL from a bound integer, so the database clock decides expiry for
        # every writer alike (localdapr and daprd).
        expires = "now() + make_interval(secs => %(ttl)s)" if ttl else "NULL"
        params = {"key": item.key, "value": item.value, "etag": item.etag, "ttl": ttl}
        if item.etag:
            cur = await conn.execute(
                f"UPDATE {table} SET value = %(value)s, updated_at = now(), etag = gen_random_uuid(), "
                f"expires_at = {expires} WHERE key = %(key)s AND etag = %(etag)s "
                "AND (expires_at IS NULL OR expires_at >= now())",
                params,
            )
            if cur.rowcount != 1:
                raise EtagMismatch(f"possible etag mismatch. error from state store: etag {item.etag!r}")
            return
        # Without an etag it is an upsert; first-write only replaces a row that has expired but is not
        # yet cleaned up.
        only_expired = (
            " WHERE t.expires_at IS NOT NULL AND t.expires_at < now()"
            if item.concurrency == FIRST_WRITE
            else ""
        )
        cur = await conn.execute(
            f"INSERT INTO {table} AS t (key, value, etag, expires_at) "
            f"VALUES (%(key)s, %(value)s, gen_random_uuid(), {expires}) ON CONFLICT (key) DO UPDATE SET "
            f"value = %(value)s, updated_at = now(), etag = gen_random_uuid(), expires_at = {expires}"
            + only_expired,
            params,
        )
        if cur.rowcount != 1:
            raise EtagMismatch("possible etag mismatch. error from state store: first-write and key exists")


def _check_etag(etag: str | None) -> None:
    """v2 etags are uuids; anything else can never match (daprd's query fails on it instead)."""
    if etag:
        try:
            uuid.UUID(etag)
        except ValueError:
            raise EtagInvalid(f"invalid etag value: {etag!r}") from None


async def _close_pool(pool: AsyncConnectionPool) -> None:
    await pool.close(timeout=2.0)
