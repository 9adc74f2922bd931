"""state.in-memory: a dict in the sidecar process, with etags, TTL and atomic transactions."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from localdapr.components.spec import ComponentSpec
from localdapr.state.base import (
    Concurrency,
    GetResult,
    StateItem,
    StateStore,
    TransactionOp,
    check_etag,
)


def rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


class InMemoryStateStore(StateStore):
    def __init__(self) -> None:
        # key -> (value, version, expires_at or None)
        self._data: dict[str, tuple[bytes, int, float | None]] = {}
        # One instance is shared by every sidecar in the process (components/factory.py), and tests
        # run sidecars on event loops of their own threads: an asyncio.Lock belongs to one loop (a
        # second loop waiting on it raises "bound to a different event loop"). No section awaits, so
        # a thread lock is held only for a few dict operations and never blocks a loop for long.
        self._lock = threading.Lock()

    @classmethod
    def from_spec(cls, spec: ComponentSpec) -> InMemoryStateStore:
        return cls()

    def _live(self, key: str) -> tuple[bytes, int, float | None] | None:
        entry = self._data.get(key)
        if entry is not None and entry[2] is not None and entry[2] <= time.time():
            del self._data[key]
            return None
        return entry

    async def get(self, key: str) -> GetResult | None:
        with self._lock:
            entry = self._live(key)
        if entry is None:
            return None
        metadata = {"ttlExpireTime": rfc3339(entry[2])} if entry[2] is not None else {}
        return GetResult(data=entry[0], etag=str(entry[1]), metadata=metadata)

    def _check(self, key: str, etag: str | None, concurrency: Concurrency | None) -> int:
        entry = self._live(key)
        check_etag(etag, concurrency, str(entry[1]) if entry else None)
        return entry[1] if entry else 0

    def _write(self, item: StateItem, version: int) -> None:
        ttl = item.ttl_seconds
        self._data[item.key] = (item.value, version + 1, time.time() + ttl if ttl else None)

    async def set(self, item: StateItem) -> None:
        with self._lock:
            version = self._check(item.key, item.etag, item.concurrency)
            self._write(item, version)

    async def delete(self, key: str, etag: str | None = None, concurrency: Concurrency | None = None) -> None:
        with self._lock:
            self._check(key, etag, concurrency)
            self._data.pop(key, None)

    async def transact(self, ops: Sequence[TransactionOp]) -> None:
        with self._lock:
            # Check every etag first so a failure writes nothing (all-or-nothing).
            versions = [self._check(op.item.key, op.item.etag, op.item.concurrency) for op in ops]
            for op, version in zip(ops, versions, strict=True):
                if op.operation == "upsert":
                    self._write(op.item, version)
                else:
                    self._data.pop(op.item.key, None)

    async def keys_with_prefix(self, prefix: str) -> list[str]:
        with self._lock:
            return [k for k in list(self._data) if k.startswith(prefix) and self._live(k) is not None]
