"""In-memory fakes of alerting's ports: the AlertingRepository and OutboxRepository (one store, the same
optimistic-concurrency rules as the Dapr ones), the machines' actors and the notification channel.

Each key holds (value, version); a conditional write presents the version it read and fails with
`Conflict` if the key moved on, so the service's retry loop is exercised without a sidecar. The alert
and fleet indexes and the dead-letter log are sharded exactly as in the Dapr repository, and every
read yields to the event loop as a sidecar round trip does, so concurrent writers interleave between
their read and their write and collide only when they share a key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from apps.alerting.domain import DeadLetter, RetiredMachine, ring_slot
from apps.alerting.errors import EquipmentUnavailable
from apps.alerting.lifecycle import AlertIndex, AlertRecord
from apps.alerting.notifications import DeliveryStatus, Notification
from apps.alerting.ports import DeliveryFailed
from apps.alerting.store import DEAD_LETTER_SHARDS, INDEX_SHARDS, Conflict, OutboxWrite, Versioned, shard_of
from apps.common.contracts import AlertKind, HealthSnapshot


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
        outbox: OutboxWrite | None = None,
    ) -> None:
        shard_key = f"alerts/index/{shard_of(equipment_id)}"
        self._check(shard_key, read.etag)
        pending_key = f"notify/pending/{shard_of(equipment_id)}"
        if outbox is not None:
            self._check(pending_key, outbox.pending.etag)
        for r in upserts:
            self._put(f"a/{r.id}", r)
        for i in deletes:
            self.data.pop(f"a/{i}", None)
        self._put(shard_key, dict(index))
        if outbox is not None:
            for n in outbox.notifications:
                self._put(f"notify/n/{n.id}", n)
            self._put(pending_key, [*outbox.pending.value, *(n.id for n in outbox.notifications)])

    async def pending_notifications(self, equipment_id: str) -> Versioned[list[str]]:
        await asyncio.sleep(0)
        value, etag = self._get(f"notify/pending/{shard_of(equipment_id)}", [])
        return Versioned(list(value), etag)

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
            self.data.pop(f"retired/{snapshot.equipment_id}", None)
        self._put(key, snapshot)

    async def get_snapshots(self, equipment_ids: Sequence[str]) -> dict[str, Versioned[HealthSnapshot]]:
        await asyncio.sleep(0)
        return {i: Versioned(*self._get(f"m/{i}")) for i in equipment_ids if f"m/{i}" in self.data}

    async def save_snapshots(
        self, writes: Sequence[tuple[Versioned[HealthSnapshot], HealthSnapshot]]
    ) -> None:
        for read, snapshot in writes:  # all checked first: a transaction writes all or nothing
            self._check(f"m/{snapshot.equipment_id}", read.etag)
        for _, snapshot in writes:
            self._put(f"m/{snapshot.equipment_id}", snapshot)

    async def snapshots(self) -> list[HealthSnapshot]:
        await asyncio.sleep(0)
        return [
            self.data[f"m/{i}"][0] for n in range(INDEX_SHARDS) for i in self._get(f"fleet/index/{n}", [])[0]
        ]

    async def retired(self, equipment_id: str) -> RetiredMachine | None:
        await asyncio.sleep(0)
        return self._get(f"retired/{equipment_id}")[0]  # type: ignore[no-any-return]

    async def retire_machine(self, retired: RetiredMachine) -> None:
        shard_key = f"fleet/index/{shard_of(retired.equipment_id)}"
        ids, etag = self._get(shard_key, [])
        await asyncio.sleep(0)
        self._check(shard_key, etag)
        self._put(shard_key, [i for i in ids if i != retired.equipment_id])
        self.data.pop(f"m/{retired.equipment_id}", None)
        self._put(f"retired/{retired.equipment_id}", retired)

    # ------------------------------------------------------------------ outbox (the sender's side)
    async def pending(self) -> list[Versioned[Notification]]:
        await asyncio.sleep(0)
        ids = [i for n in range(INDEX_SHARDS) for i in self._get(f"notify/pending/{n}", [])[0]]
        return [Versioned(*self._get(f"notify/n/{i}")) for i in ids if f"notify/n/{i}" in self.data]

    async def claim(self, read: Versioned[Notification], claimed: Notification) -> None:
        self._check(f"notify/n/{claimed.id}", read.etag)
        self._put(f"notify/n/{claimed.id}", claimed)

    async def save(self, notification: Notification) -> None:
        self._put(f"notify/n/{notification.id}", notification)

    async def finish(self, notification: Notification, status: DeliveryStatus) -> None:
        key = f"notify/pending/{shard_of(notification.equipment_id)}"
        ids, etag = self._get(key, [])
        await asyncio.sleep(0)  # an alert write may add to the list in between: then a Conflict
        self._check(key, etag)
        self.data.pop(f"notify/n/{notification.id}", None)
        self._put(key, [i for i in ids if i != notification.id])
        self._put("notify/status", status)

    async def status(self) -> DeliveryStatus:
        return self._get("notify/status", DeliveryStatus())[0]  # type: ignore[no-any-return]

    async def save_status(self, status: DeliveryStatus) -> None:
        self._put("notify/status", status)

    def notifications(self) -> list[Notification]:
        """What is in the outbox now (pending notifications)."""
        return [v for k, (v, _) in self.data.items() if k.startswith("notify/n/")]

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


class FakeMachines:
    """The machines' actors: records the episodes ended and the machines retired."""

    RETIRED_AT = datetime(2024, 1, 1, 1, tzinfo=UTC)  # when an actor says it retired a machine

    def __init__(self) -> None:
        self.ended: list[tuple[str, str, int]] = []
        self.retired: list[str] = []
        self.down = False
        self.moved_on = False  # the actor answers that the episode is no longer its latest

    async def end_episode(self, equipment_id: str, kind: AlertKind, episode: int) -> bool:
        if self.down:
            raise EquipmentUnavailable(f"the actor of {equipment_id} did not answer: connection refused")
        self.ended.append((equipment_id, kind, episode))
        return not self.moved_on

    async def retire(self, equipment_id: str) -> datetime | None:
        if self.down:
            raise EquipmentUnavailable(f"the actor of {equipment_id} did not answer: connection refused")
        self.retired.append(equipment_id)
        return self.RETIRED_AT


class FlakyChannel:
    """A webhook that refuses the first `failures` attempts of each notification, then takes it."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.attempts: dict[str, int] = {}
        self.delivered: list[Notification] = []

    async def send(self, notification: Notification) -> None:
        n = self.attempts[notification.id] = self.attempts.get(notification.id, 0) + 1
        if n <= self.failures:
            raise DeliveryFailed("received status code 503")
        self.delivered.append(notification)
