"""state.sqlite: one SQLite file, the embedded profile's store (no server, survives restarts).

Metadata as daprd's `state.sqlite`: `connectionString` (a file path, `file:` URI or `:memory:`),
`tableName` (default `state`), `busyTimeout` (Go duration, default 2s). The table keeps the value,
a version number (the etag) and an optional expiry time.

All calls run on one dedicated worker thread per store, so the event loop never waits on disk and
the single connection serialises them; writes use `BEGIN IMMEDIATE`, so two processes sharing the
file (a sidecar restarted while another still runs) never interleave a read-check-write.

Writes are group-committed: those that arrive while a commit is on the worker thread go together in
the next one, each in a savepoint of its own (one that fails, e.g. on an etag, is rolled back alone
and fails only its caller), and each caller is answered once the commit is done. A lone write goes at
once. Many actors saving at the same time (one state transaction per actor call) then cost one
thread hand-over and one commit per batch instead of one each.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TypeVar

from localdapr.components.spec import ComponentSpec
from localdapr.durations import parse_go_duration
from localdapr.state.base import (
    Concurrency,
    GetResult,
    StateItem,
    StateStore,
    StateStoreError,
    TransactionOp,
    check_etag,
)
from localdapr.state.memory import rfc3339

T = TypeVar("T")
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class SQLiteStateStore(StateStore):
    def __init__(self, path: str, table: str = "state", busy_timeout: float = 2.0) -> None:
        self.path = path
        self.table = table
        self.busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="state.sqlite")
        # Writes waiting for their loop's next group commit (sidecars on threads of one process share
        # the store, each on its loop); a loop has a key while its committer task runs.
        self._queued: dict[
            asyncio.AbstractEventLoop, list[tuple[Sequence[TransactionOp], asyncio.Future[None]]]
        ] = {}
        self._committers: set[asyncio.Task[None]] = set()

    @classmethod
    def from_spec(cls, spec: ComponentSpec) -> SQLiteStateStore:
        path = spec.require("connectionString")
        table = spec.get("tableName", "state")
        if not _TABLE_NAME.match(table):
            raise spec.fail(f"metadata field 'tableName' must be a plain identifier, got {table!r}")
        try:
            busy = parse_go_duration(spec.get("busyTimeout", "2s"))
        except ValueError as exc:
            raise spec.fail(f"metadata field 'busyTimeout': {exc}") from None
        return cls(path, table, busy)

    # ------------------------------------------------------------------ plumbing
    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            if self._conn is None:
                raise StateStoreError(f"state.sqlite {self.path}: store is closed")
            return fn(self._conn)

        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def init(self) -> None:
        def connect() -> sqlite3.Connection:
            uri = self.path.startswith("file:")
            if not uri and self.path != ":memory:":
                Path(self.path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False, uri=uri
            )
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(
                f"CREATE TABLE IF NOT EXISTS {self.table} ("
                "key TEXT PRIMARY KEY, value BLOB NOT NULL, version INTEGER NOT NULL, expires_at REAL)"
            )
            return conn

        try:
            self._conn = await asyncio.get_running_loop().run_in_executor(self._executor, connect)
        except (sqlite3.Error, OSError) as exc:
            raise StateStoreError(
                f"state.sqlite: cannot open {self.path!r} (connectionString): {exc}"
            ) from exc

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=False)

    def _row(self, conn: sqlite3.Connection, key: str) -> tuple[bytes, int, float | None] | None:
        row = conn.execute(
            f"SELECT value, version, expires_at FROM {self.table} WHERE key = ?", (key,)
        ).fetchone()
        if row is None or (row[2] is not None and row[2] <= time.time()):
            return None
        return bytes(row[0]), int(row[1]), row[2]

    def _write(self, conn: sqlite3.Connection, op: TransactionOp) -> None:
        item = op.item
        found = self._row(conn, item.key)
        check_etag(item.etag, item.concurrency, str(found[1]) if found else None)
        if op.operation == "delete":
            conn.execute(f"DELETE FROM {self.table} WHERE key = ?", (item.key,))
            return
        ttl = item.ttl_seconds
        conn.execute(
            f"INSERT INTO {self.table} (key, value, version, expires_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, version = excluded.version, "
            "expires_at = excluded.expires_at",
            (item.key, item.value, (found[1] if found else 0) + 1, time.time() + ttl if ttl else None),
        )

    def _atomic(self, conn: sqlite3.Connection, ops: Sequence[TransactionOp]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op in ops:
                self._write(conn, op)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _atomic_each(
        self, conn: sqlite3.Connection, batch: Sequence[Sequence[TransactionOp]]
    ) -> list[Exception | None]:
        """One commit for several callers' transactions, each all-or-nothing in its own savepoint:
        what each one raised (None when it went in)."""
        failures: list[Exception | None] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for ops in batch:
                conn.execute("SAVEPOINT caller")
                try:
                    for op in ops:
                        self._write(conn, op)
                except Exception as exc:
                    conn.execute("ROLLBACK TO caller")
                    failures.append(exc)
                else:
                    failures.append(None)
                conn.execute("RELEASE caller")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return failures

    async def _write_ops(self, ops: Sequence[TransactionOp]) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        queued = self._queued.get(loop)
        if queued is None:
            self._queued[loop] = [(ops, done)]
            committer = loop.create_task(self._commit_queued(loop))
            self._committers.add(committer)
            committer.add_done_callback(self._committers.discard)
        else:
            queued.append((ops, done))
        await done

    async def _commit_queued(self, loop: asyncio.AbstractEventLoop) -> None:
        """Commit this loop's queued writes, a batch at a time, until none are left."""
        while batch := self._queued[loop]:
            self._queued[loop] = []
            try:
                failures = await self._run(partial(self._atomic_each, batch=[ops for ops, _ in batch]))
            except BaseException as exc:  # the commit itself failed, or the store closed: every caller
                error = exc if isinstance(exc, Exception) else StateStoreError("state.sqlite: store stopped")
                if error is not exc:  # cancelled: nobody commits what is still queued either
                    batch += self._queued.pop(loop, [])
                for _, done in batch:
                    if not done.done():
                        done.set_exception(error)
                if error is not exc:
                    raise
                continue
            for (_, done), failure in zip(batch, failures, strict=True):
                if done.done():
                    continue  # the caller was cancelled: its write went in all the same, as before
                if failure is None:
                    done.set_result(None)
                else:
                    done.set_exception(failure)
        del self._queued[loop]

    # ------------------------------------------------------------------ interface
    async def get(self, key: str) -> GetResult | None:
        return _result(await self._run(lambda c: self._row(c, key)))

    async def bulk_get(self, keys: Sequence[str]) -> list[GetResult | None]:
        rows = await self._run(lambda c: [self._row(c, k) for k in keys])
        return [_result(r) for r in rows]

    async def set(self, item: StateItem) -> None:
        await self._write_ops([TransactionOp("upsert", item)])

    async def delete(self, key: str, etag: str | None = None, concurrency: Concurrency | None = None) -> None:
        await self._write_ops(
            [TransactionOp("delete", StateItem(key=key, etag=etag, concurrency=concurrency))]
        )

    async def transact(self, ops: Sequence[TransactionOp]) -> None:
        await self._write_ops(ops)

    async def keys_with_prefix(self, prefix: str) -> list[str]:
        # LIKE would need escaping of % and _; a range scan on the primary key is exact and indexed.
        def scan(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                f"SELECT key FROM {self.table} WHERE key >= ? AND key < ? "
                "AND (expires_at IS NULL OR expires_at > ?)",
                (prefix, prefix + "\U0010ffff", time.time()),
            ).fetchall()
            return [str(r[0]) for r in rows if str(r[0]).startswith(prefix)]

        return await self._run(scan)


def _result(row: tuple[bytes, int, float | None] | None) -> GetResult | None:
    if row is None:
        return None
    metadata = {"ttlExpireTime": rfc3339(row[2])} if row[2] is not None else {}
    return GetResult(data=row[0], etag=str(row[1]), metadata=metadata)
