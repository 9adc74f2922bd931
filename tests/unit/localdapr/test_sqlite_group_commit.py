"""state.sqlite's group commit: concurrent writes share one commit, each all-or-nothing on its own."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from localdapr.state.base import EtagMismatch, StateItem, TransactionOp
from localdapr.state.sqlite import SQLiteStateStore


def _upsert(key: str, value: bytes, etag: str | None = None) -> TransactionOp:
    return TransactionOp("upsert", StateItem(key=key, value=value, etag=etag))


async def _store(path: Path) -> tuple[SQLiteStateStore, list[str]]:
    store = SQLiteStateStore(str(path))
    await store.init()
    statements: list[str] = []
    assert store._conn is not None
    store._conn.set_trace_callback(statements.append)
    return store, statements


def test_concurrent_writes_share_a_commit_and_fail_alone(tmp_path: Path) -> None:
    async def scenario() -> None:
        store, statements = await _store(tmp_path / "s.db")
        try:
            await store.set(StateItem(key="guarded", value=b"0"))
            statements.clear()
            writes = [store.transact([_upsert(f"k{i}", b"%d" % i), _upsert(f"j{i}", b"x")]) for i in range(8)]
            # A stale etag: this caller's two writes are rolled back, the others' go in.
            writes.append(store.transact([_upsert("lost", b"1"), _upsert("guarded", b"2", etag="99")]))
            writes.append(store.delete("k0"))
            results = await asyncio.gather(*writes, return_exceptions=True)
            assert [type(r) for r in results] == [type(None)] * 8 + [EtagMismatch, type(None)]
            assert statements.count("COMMIT") == 1
            assert await store.get("k0") is None  # deleted after its upsert, in order
            found = await store.bulk_get(["k7", "j7", "lost", "guarded"])
            assert [None if f is None else f.data for f in found] == [b"7", b"x", None, b"0"]
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_lone_write_commits_at_once_and_later_writes_commit_again(tmp_path: Path) -> None:
    async def scenario() -> None:
        store, statements = await _store(tmp_path / "s.db")
        try:
            for i in range(3):
                await store.set(StateItem(key="k", value=b"%d" % i))
            assert statements.count("COMMIT") == 3
            found = await store.get("k")
            assert found is not None and (found.data, found.etag) == (b"2", "3")
        finally:
            await store.close()

    asyncio.run(scenario())


def test_a_failed_commit_fails_every_caller_of_the_batch(tmp_path: Path) -> None:
    async def scenario() -> None:
        path = tmp_path / "s.db"
        store, _ = await _store(path)
        store.busy_timeout = 0
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
            assert store._conn is not None
            store._conn.execute("PRAGMA busy_timeout = 0")
            results = await asyncio.gather(
                store.set(StateItem(key="a", value=b"1")),
                store.set(StateItem(key="b", value=b"1")),
                return_exceptions=True,
            )
            assert all(isinstance(r, sqlite3.OperationalError) for r in results), results
            other.execute("ROLLBACK")
            await store.set(StateItem(key="a", value=b"2"))  # the store goes on once the lock is gone
            found = await store.get("a")
            assert found is not None and found.data == b"2"
        finally:
            other.close()
            await store.close()

    asyncio.run(scenario())


def test_sidecars_on_other_loops_share_the_store(tmp_path: Path) -> None:
    loops = 2

    async def prepare() -> tuple[SQLiteStateStore, list[str]]:
        return await _store(tmp_path / "s.db")

    store, _ = asyncio.run(prepare())

    async def writes(n: int) -> None:
        await asyncio.gather(*(store.set(StateItem(key=f"{n}-{i}", value=b"v")) for i in range(5)))

    try:
        for n in range(loops):
            asyncio.run(writes(n))  # a new loop each time: each gets its own group commits
        assert store._queued == {}

        async def count() -> int:
            return len(await store.keys_with_prefix(""))

        assert asyncio.run(count()) == 5 * loops
    finally:
        asyncio.run(store.close())
