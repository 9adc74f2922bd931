"""An in-memory AlertingRepository with the same optimistic-concurrency rules as the Dapr one.

Each key holds (value, version); a conditional write presents the version it read and fails with
`Conflict` if the key moved on, so the service's retry loop is exercised without a sidecar. The alert
and fleet indexes and the dead-letter log are sharded exactly as in the Dapr repository, and every
read yields to the event loop as a sidecar round trip does, so concurrent writers interleave between
their read and their write and collide only when they share a key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from apps.alerting.domain import AlertIndex, AlertRecord, DeadLetter, ring_slot
from apps.alerting.store import DEAD_LETTER_SHARDS, INDEX_SHARDS, Conflict, Versioned, shard_of
from apps.common.contracts import HealthSnapshot


class InMemoryAlertingRepository:
    def __init__(self) -> None:
        self.data: dict[str, tuple[Any, int]] = {}
        self.writes = 0
        self.conflicts = 0  # conditional writes that failed on a real etag mismatch
        self.conflicts_to_inject = 0  # the next N conditional writes fail as if a replica got there first

    # ------------------------------------------------------------------ plumbing
    def _get(self, key: str, default: Any = None) -> tuple[Any, str]:
        value, version = self.data.get(key, (default, 0))
        return value, str(version)

    def _check(self, key: str, etag: str | None) -> None:
        if self.conflicts_to_inject:
            self.conflicts_to_inject -= 1
            raise Conflict(f"injected conflict on {key}")
        if etag is not None and self._get(key)[1] != etag:
            self.conflicts += 1
            raise Conflict(f"etag mismatch on {key}")

    def _put(self, key: str, value: Any) -> None:
        self.writes += 1
        self.data[key] = (value, self.data.get(key, (None, 0))[1] + 1)

    # ------------------------------------------------------------------ alerts
    async def alert_index(self, equipment_id: str) -> Versioned[AlertIndex]:
        await asyncio.sleep(0)
        value, etag = self._get(f"alerts/index/{shard_of(equipment_id)}", {})
        return Versioned(dict(value), etag)

    async def all_alerts(self) -> AlertIndex:
        await asyncio.sleep(0)
        return {i: s for n in range(INDEX_SHARDS) for i, s in self._get(f"alerts/index/{n}", {})[0].items()}

    async def get_alerts(self, ids: Sequence[str]) -> dict[str, AlertRecord]:
        await asyncio.sleep(0)
        return {i: self.data[f"a/{i}"][0] for i in ids if f"a/{i}" in self.data}

    async def commit_alerts(
        self,
        equipment_id: str,
        read: Versioned[AlertIndex],
        index: AlertIndex,
        upserts: Sequence[AlertRecord],
        deletes: Sequence[str],
    ) -> None:
        shard_key = f"alerts/index/{shard_of(equipment_id)}"
        self._check(shard_key, read.etag)
        for r in upserts:
            self._put(f"a/{r.id}", r)
        for i in deletes:
            self.data.pop(f"a/{i}", None)
        self._put(shard_key, dict(index))

    # ------------------------------------------------------------------ fleet
    async def get_snapshot(self, equipment_id: str) -> Versioned[HealthSnapshot | None]:
        await asyncio.sleep(0)
        if f"m/{equipment_id}" in self.data:
            value, etag = self._get(f"m/{equipment_id}")
            return Versioned(value, etag)
        return Versioned(None, self._get(f"fleet/index/{shard_of(equipment_id)}")[1])

    async def save_snapshot(self, read: Versioned[HealthSnapshot | None], snapshot: HealthSnapshot) -> None:
        key = f"m/{snapshot.equipment_id}"
        if read.value is not None:
            self._check(key, read.etag)
        else:
            shard_key = f"fleet/index/{shard_of(snapshot.equipment_id)}"
            self._check(shard_key, read.etag)
            ids = set(self._get(shard_key, [])[0]) | {snapshot.equipment_id}
            self._put(shard_key, sorted(ids))
        self._put(key, snapshot)

    async def snapshots(self) -> list[HealthSnapshot]:
        await asyncio.sleep(0)
        return [
            self.data[f"m/{i}"][0] for n in range(INDEX_SHARDS) for i in self._get(f"fleet/index/{n}", [])[0]
        ]

    # ------------------------------------------------------------------ dead letters
    async def dead_letter_next(self, shard: int) -> Versioned[int]:
        await asyncio.sleep(0)
        value, etag = self._get(f"dl/{shard}/next", 0)
        return Versioned(value, etag)

    async def dead_letter_counts(self) -> list[int]:
        await asyncio.sleep(0)
        return [self._get(f"dl/{shard}/next", 0)[0] for shard in range(DEAD_LETTER_SHARDS)]

    async def dead_letter_seen(self, dedupe_key: str) -> bool:
        await asyncio.sleep(0)
        return f"dl/seen/{dedupe_key}" in self.data

    async def append_dead_letter(self, read: Versioned[int], letter: DeadLetter, ring: int) -> None:
        self._check(f"dl/{letter.shard}/next", read.etag)
        self._put(f"dl/{letter.shard}/slot/{ring_slot(letter.seq, ring)}", letter)
        self._put(f"dl/{letter.shard}/next", read.value + 1)
        if letter.dedupe_key:
            self._put(f"dl/seen/{letter.dedupe_key}", True)

    async def dead_letters(self, wanted: Sequence[tuple[int, int]], ring: int) -> list[DeadLetter]:
        await asyncio.sleep(0)
        out = []
        for shard, seq in wanted:
            letter = self._get(f"dl/{shard}/slot/{ring_slot(seq, ring)}")[0]
            if letter is not None and letter.seq == seq:
                out.append(letter)
        return out
