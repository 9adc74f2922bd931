"""Alerting's state: alerts, their notification outbox, fleet health and dead letters in the Dapr state
store, behind a small interface.

The service depends on `AlertingRepository` only; `DaprAlertingRepository` implements it on the Dapr
state API (any transactional store behind `statestore`: SQLite, Redis, PostgreSQL...), and the unit
tests use an in-memory fake with the same optimistic-concurrency behaviour.

Key layout (the store's default key prefix is the app id, so these never meet another app's keys;
they are alerting's private layout, hence here and not in apps/common/names.py):

    alerts/index/<shard>       {alert id: AlertSummary} of the machines in the shard (etag-guarded;
                               every alert write of those machines goes through it)
    alerts/a/<alert id>        AlertRecord (with its history)
    notify/pending/<shard>     [notification id, ...] not yet delivered, of the machines in the shard
                               (etag-guarded: alert writes add to it, the sender removes from it)
    notify/n/<id>              Notification (etag-guarded: a sender claims it before sending)
    notify/status              DeliveryStatus (the sender's, last write wins)
    fleet/index/<shard>        [equipment id, ...] of the machines in the shard (etag-guarded; written
                               when a machine appears or is retired)
    fleet/m/<equipment id>     latest HealthSnapshot     (etag-guarded per machine)
    fleet/retired/<id>         RetiredMachine: keeps a late snapshot from bringing it back
    deadletters/<dl>/next      next sequence number of dead-letter shard <dl> (etag-guarded)
    deadletters/<dl>/slot/<n>  DeadLetter of shard <dl> with seq % ring == n (a ring buffer per shard:
                               bounded retention)
    deadletters/seen/<t/p/id>  marker of a CloudEvent already recorded (TTL), to drop redeliveries

`<shard>` is `shard_of(equipment id)`, one of INDEX_SHARDS. A single index key would be written by
every new machine and every alert of the fleet, so concurrent writers (a fleet starting up, several
replicas) would mostly collide on its etag; sharded, writers only meet when their machines share a
shard, and listings read all shards in one bulk get. The dead-letter log is split the same way, into
DEAD_LETTER_SHARDS logs (`<dl>` = `dead_letter_shard(letter)`), each with its own sequence counter.

Optimistic concurrency: each write carries the etag of what it read, in one transaction, and a
`Conflict` tells the caller to read again. Every alert write includes its shard's index etag, so the
alert writes of one shard are serialised across replicas without a lock service; an alert and the
earlier episodes it supersedes belong to one machine, hence to one shard.

The outbox: an alert change and the notification it owes are written in the same transaction (the
record, the notification, and the shard's pending list), so a notification exists if and only if its
change was committed, and a crash between the commit and the send loses nothing (outbox.py reads it).
"""

from __future__ import annotations

import asyncio
import json
import random
import zlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

import grpc
from dapr.aio.clients import DaprClient
from dapr.clients.exceptions import DaprInternalError
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.clients.grpc._state import Concurrency, StateOptions
from pydantic import TypeAdapter

from apps.alerting.domain import DeadLetter, RetiredMachine, ring_slot
from apps.alerting.lifecycle import AlertIndex, AlertRecord, AlertSummary
from apps.alerting.notifications import Notification
from apps.common.contracts import HealthSnapshot
from apps.common.names import STATE_STORE

T = TypeVar("T")
R = TypeVar("R")

# Fixed, not a setting: a machine's shard is part of its index keys, so another count would leave what
# is stored under the old one unlisted. 64 keeps a 1,000-machine fleet at ~16 machines per shard and
# a listing at one bulk get of 64 keys.
INDEX_SHARDS: Final = 64
# Fixed for the same reason. A listing reads at most min(limit, ring) letters per shard, in all no
# more than the retention plus one per shard whatever the count, so the count is chosen for concurrent
# writers as for the indexes; the cost: the retention is rounded up to a multiple of it.
DEAD_LETTER_SHARDS: Final = 64

_INDEX = TypeAdapter(dict[str, AlertSummary])
_IDS = TypeAdapter(list[str])


def _stable_hash(text: str) -> int:
    # Every replica and every restart must agree, and Python's hash() of a str is salted per process.
    return zlib.crc32(text.encode())


def shard_of(equipment_id: str) -> int:
    """The index shard of a machine."""
    return _stable_hash(equipment_id) % INDEX_SHARDS


def dead_letter_shard(letter: DeadLetter) -> int:
    """The log shard of a dead letter: by its CloudEvent (dedupe key), so that redeliveries of one
    event meet in one shard; a letter without one is spread by its content."""
    return _stable_hash(letter.dedupe_key or letter.model_dump_json()) % DEAD_LETTER_SHARDS


def alert_index_key(shard: int) -> str:
    return f"alerts/index/{shard}"


def fleet_index_key(shard: int) -> str:
    return f"fleet/index/{shard}"


def alert_key(alert_id: str) -> str:
    return f"alerts/a/{alert_id}"


def machine_key(equipment_id: str) -> str:
    return f"fleet/m/{equipment_id}"


def retired_key(equipment_id: str) -> str:
    return f"fleet/retired/{equipment_id}"


def pending_key(shard: int) -> str:
    return f"notify/pending/{shard}"


def notification_key(notification_id: str) -> str:
    return f"notify/n/{notification_id}"


STATUS_KEY: Final = "notify/status"


def dead_letter_next_key(shard: int) -> str:
    return f"deadletters/{shard}/next"


def slot_key(shard: int, slot: int) -> str:
    return f"deadletters/{shard}/slot/{slot}"


def seen_key(dedupe_key: str) -> str:
    return f"deadletters/seen/{dedupe_key}"


class Conflict(Exception):
    """Somebody else wrote what this write read (etag mismatch): read again and retry."""


async def retrying(what: str, attempt: Callable[[], Awaitable[R]], max_retries: int) -> R:
    """Run read -> decide -> conditional write (`attempt`) until no Conflict, at most `max_retries` times."""
    for n in range(max_retries):
        try:
            return await attempt()
        except Conflict:
            # Another writer got there first: back off a little (jittered) and read again.
            await asyncio.sleep(random.uniform(0, 0.005 * (n + 1)))
    raise RuntimeError(f"{what}: gave up after {max_retries} etag conflicts")


@dataclass(frozen=True, slots=True)
class Versioned(Generic[T]):
    """A value with the opaque token (an etag) that a conditional write must present."""

    value: T
    etag: str | None


@dataclass(frozen=True, slots=True)
class OutboxWrite:
    """Notifications to add to a shard's outbox in an alert write: its pending list as read, and them."""

    pending: Versioned[list[str]]
    notifications: Sequence[Notification]


class AlertingRepository(Protocol):
    async def alert_index(self, equipment_id: str) -> Versioned[AlertIndex]:
        """The index shard holding `equipment_id`'s alerts (and those of the other machines in it)."""

    async def all_alerts(self) -> AlertIndex:
        """Every shard's index merged (for listings: it carries no etag, so no write can follow it)."""

    async def get_alerts(self, ids: Sequence[str]) -> dict[str, AlertRecord]: ...
    async def commit_alerts(
        self,
        equipment_id: str,
        read: Versioned[AlertIndex],
        index: AlertIndex,
        upserts: Sequence[AlertRecord],
        deletes: Sequence[str],
        outbox: OutboxWrite | None = None,
    ) -> None:
        """Write alerts, the new index of `equipment_id`'s shard and the notifications they owe
        atomically, if that index (and the outbox's pending list) are still as read (else Conflict)."""

    async def pending_notifications(self, equipment_id: str) -> Versioned[list[str]]:
        """The outbox's pending list of `equipment_id`'s shard, to add to in an alert write."""

    async def get_snapshot(self, equipment_id: str) -> Versioned[HealthSnapshot | None]:
        """The machine's snapshot; when absent, the token guards the creation of that machine."""

    async def save_snapshot(
        self, read: Versioned[HealthSnapshot | None], snapshot: HealthSnapshot
    ) -> None: ...
    async def get_snapshots(self, equipment_ids: Sequence[str]) -> dict[str, Versioned[HealthSnapshot]]:
        """The snapshots of those of `equipment_ids` the fleet has, with their etags (one bulk read)."""

    async def save_snapshots(
        self, writes: Sequence[tuple[Versioned[HealthSnapshot], HealthSnapshot]]
    ) -> None:
        """Replace known machines' snapshots in one transaction, each guarded by the etag it was read
        with (Conflict, nothing written, if any moved on)."""

    async def snapshots(self) -> list[HealthSnapshot]: ...
    async def retired(self, equipment_id: str) -> RetiredMachine | None: ...
    async def retire_machine(self, retired: RetiredMachine) -> None:
        """Take the machine out of the fleet view and keep `retired` (Conflict if its shard moved on)."""

    async def dead_letter_next(self, shard: int) -> Versioned[int]:
        """The next sequence number of dead-letter shard `shard`."""

    async def dead_letter_counts(self) -> list[int]:
        """Every dead-letter shard's next sequence number, by shard (for listings: no etags)."""

    async def dead_letter_seen(self, dedupe_key: str) -> bool: ...
    async def append_dead_letter(self, read: Versioned[int], letter: DeadLetter, ring: int) -> None:
        """Store `letter` (its seq == read.value) in its shard's ring slot and advance that shard's
        counter, atomically."""

    async def dead_letters(self, wanted: Sequence[tuple[int, int]], ring: int) -> list[DeadLetter]:
        """The letters at (shard, seq) still held by their ring."""


# What a failed state call raises: the async SDK wraps most RPC errors in DaprGrpcError (an RpcError)
# but `save_state` in DaprInternalError, which keeps only the message.
StateError = (grpc.RpcError, DaprInternalError)


def is_conflict(exc: Exception) -> bool:
    # localdapr and daprd answer an etag mismatch on save with ABORTED; daprd wraps a failed
    # transaction's etag error in a generic code, and save_state's error has no code at all, hence
    # the message check as well.
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
    return code == grpc.StatusCode.ABORTED or "etag" in str(details or "").lower()


class DaprState:
    """The Dapr state API calls alerting's repositories share (official async SDK client)."""

    def __init__(self, client: DaprClient, store: str = STATE_STORE, chunk: int = 500) -> None:
        self.client = client
        self.store = store
        self.chunk = chunk

    async def _read(self, key: str) -> tuple[bytes | None, str | None]:
        got = await self.client.get_state(self.store, key)
        return (bytes(got.data) if got.data else None), (got.etag or None)

    async def _ensure(self, key: str, initial: str) -> tuple[bytes, str]:
        """Read `key`, creating it with `initial` first if absent, so later writes always have an etag."""
        data, etag = await self._read(key)
        if data is not None and etag:
            return data, etag
        try:
            await self.client.save_state(
                self.store, key, initial, options=StateOptions(concurrency=Concurrency.first_write)
            )
        except StateError as exc:
            if not is_conflict(exc):
                raise  # a concurrent creator won: fine, read what it wrote
        data, etag = await self._read(key)
        if data is None or not etag:
            raise RuntimeError(f"state store {self.store!r} returned no etag for {key!r}")
        return data, etag

    async def _transact(self, ops: list[TransactionalStateOperation]) -> None:
        try:
            await self.client.execute_state_transaction(self.store, ops)
        except StateError as exc:
            if is_conflict(exc):
                raise Conflict(str(exc)) from exc
            raise

    async def _bulk(self, keys: Sequence[str]) -> dict[str, bytes]:
        """Values of `keys` that exist, read in chunks (one round trip per chunk, chunks in parallel)."""
        return {k: data for k, (data, _) in (await self._bulk_versioned(keys)).items()}

    async def _bulk_versioned(self, keys: Sequence[str]) -> dict[str, tuple[bytes, str | None]]:
        """Values and etags of `keys` that exist, read as `_bulk` does."""
        chunks = [list(keys[i : i + self.chunk]) for i in range(0, len(keys), self.chunk)]
        responses = await asyncio.gather(
            *(self.client.get_bulk_state(self.store, c, parallelism=8) for c in chunks)
        )
        out: dict[str, tuple[bytes, str | None]] = {}
        for response in responses:
            for item in response.items:
                if item.error:
                    raise RuntimeError(f"reading {item.key!r} from {self.store!r} failed: {item.error}")
                if item.data:
                    out[item.key] = (bytes(item.data), item.etag or None)
        return out


class DaprAlertingRepository(DaprState):
    """AlertingRepository on the Dapr state API."""

    def __init__(
        self,
        client: DaprClient,
        store: str = STATE_STORE,
        chunk: int = 500,
        dedupe_ttl_seconds: int = 24 * 3600,
    ) -> None:
        super().__init__(client, store, chunk)
        self.dedupe_ttl_seconds = dedupe_ttl_seconds

    # ------------------------------------------------------------------ alerts
    async def alert_index(self, equipment_id: str) -> Versioned[AlertIndex]:
        data, etag = await self._ensure(alert_index_key(shard_of(equipment_id)), "{}")
        return Versioned(_INDEX.validate_json(data), etag)

    async def all_alerts(self) -> AlertIndex:
        found = await self._bulk([alert_index_key(s) for s in range(INDEX_SHARDS)])
        index: AlertIndex = {}
        for raw in found.values():
            index.update(_INDEX.validate_json(raw))
        return index

    async def get_alerts(self, ids: Sequence[str]) -> dict[str, AlertRecord]:
        if not ids:
            return {}
        found = await self._bulk([alert_key(i) for i in ids])
        out = {}
        for alert_id in ids:
            raw = found.get(alert_key(alert_id))
            if raw is not None:
                out[alert_id] = AlertRecord.model_validate_json(raw)
        return out

    async def commit_alerts(
        self,
        equipment_id: str,
        read: Versioned[AlertIndex],
        index: AlertIndex,
        upserts: Sequence[AlertRecord],
        deletes: Sequence[str],
        outbox: OutboxWrite | None = None,
    ) -> None:
        ops = [TransactionalStateOperation(key=alert_key(r.id), data=r.model_dump_json()) for r in upserts]
        ops += [
            TransactionalStateOperation(key=alert_key(i), operation_type=TransactionOperationType.delete)
            for i in deletes
        ]
        ops.append(
            TransactionalStateOperation(
                key=alert_index_key(shard_of(equipment_id)),
                data=_INDEX.dump_json(index).decode(),
                etag=read.etag,
            )
        )
        if outbox is not None and outbox.notifications:
            ops += [
                TransactionalStateOperation(key=notification_key(n.id), data=n.model_dump_json())
                for n in outbox.notifications
            ]
            ids = [*outbox.pending.value, *(n.id for n in outbox.notifications)]
            ops.append(
                TransactionalStateOperation(
                    key=pending_key(shard_of(equipment_id)),
                    data=_IDS.dump_json(ids).decode(),
                    etag=outbox.pending.etag,
                )
            )
        await self._transact(ops)

    async def pending_notifications(self, equipment_id: str) -> Versioned[list[str]]:
        data, etag = await self._ensure(pending_key(shard_of(equipment_id)), "[]")
        return Versioned(_IDS.validate_json(data), etag)

    # ------------------------------------------------------------------ fleet
    async def get_snapshot(self, equipment_id: str) -> Versioned[HealthSnapshot | None]:
        data, etag = await self._read(machine_key(equipment_id))
        if data is not None:
            return Versioned(HealthSnapshot.model_validate_json(data), etag)
        # New machine: its creation is guarded by its fleet index shard's etag. The shard is read
        # BEFORE the re-read of the machine, so a creator that committed in between is either visible
        # in the re-read, or changed the shard's etag and makes our creation a Conflict.
        _, index_etag = await self._ensure(fleet_index_key(shard_of(equipment_id)), "[]")
        data, etag = await self._read(machine_key(equipment_id))
        if data is not None:
            return Versioned(HealthSnapshot.model_validate_json(data), etag)
        return Versioned(None, index_etag)

    async def save_snapshot(self, read: Versioned[HealthSnapshot | None], snapshot: HealthSnapshot) -> None:
        key = machine_key(snapshot.equipment_id)
        if read.value is not None:
            try:
                await self.client.save_state(self.store, key, snapshot.model_dump_json(), etag=read.etag)
            except StateError as exc:
                if is_conflict(exc):
                    raise Conflict(str(exc)) from exc
                raise
            return
        index_key = fleet_index_key(shard_of(snapshot.equipment_id))
        raw, _ = await self._read(index_key)
        ids = set(_IDS.validate_json(raw or b"[]"))
        ids.add(snapshot.equipment_id)
        await self._transact(
            [
                TransactionalStateOperation(key=key, data=snapshot.model_dump_json()),
                TransactionalStateOperation(
                    key=index_key, data=_IDS.dump_json(sorted(ids)).decode(), etag=read.etag
                ),
                # A retired machine sending again is back: its marker goes.
                TransactionalStateOperation(
                    key=retired_key(snapshot.equipment_id), operation_type=TransactionOperationType.delete
                ),
            ]
        )

    async def get_snapshots(self, equipment_ids: Sequence[str]) -> dict[str, Versioned[HealthSnapshot]]:
        found = await self._bulk_versioned([machine_key(i) for i in equipment_ids])
        out: dict[str, Versioned[HealthSnapshot]] = {}
        for equipment_id in equipment_ids:
            item = found.get(machine_key(equipment_id))
            if item is not None:
                out[equipment_id] = Versioned(HealthSnapshot.model_validate_json(item[0]), item[1])
        return out

    async def save_snapshots(
        self, writes: Sequence[tuple[Versioned[HealthSnapshot], HealthSnapshot]]
    ) -> None:
        await self._transact(
            [
                TransactionalStateOperation(
                    key=machine_key(snapshot.equipment_id), data=snapshot.model_dump_json(), etag=read.etag
                )
                for read, snapshot in writes
            ]
        )

    async def snapshots(self) -> list[HealthSnapshot]:
        shards = await self._bulk([fleet_index_key(s) for s in range(INDEX_SHARDS)])
        ids = [i for raw in shards.values() for i in _IDS.validate_json(raw)]
        found = await self._bulk([machine_key(i) for i in ids])
        return [HealthSnapshot.model_validate_json(v) for v in found.values()]

    async def retired(self, equipment_id: str) -> RetiredMachine | None:
        data, _ = await self._read(retired_key(equipment_id))
        return None if data is None else RetiredMachine.model_validate_json(data)

    async def retire_machine(self, retired: RetiredMachine) -> None:
        index_key = fleet_index_key(shard_of(retired.equipment_id))
        raw, etag = await self._ensure(index_key, "[]")
        ids = [i for i in _IDS.validate_json(raw) if i != retired.equipment_id]
        await self._transact(
            [
                TransactionalStateOperation(
                    key=machine_key(retired.equipment_id), operation_type=TransactionOperationType.delete
                ),
                TransactionalStateOperation(key=index_key, data=_IDS.dump_json(ids).decode(), etag=etag),
                TransactionalStateOperation(
                    key=retired_key(retired.equipment_id), data=retired.model_dump_json()
                ),
            ]
        )

    # ------------------------------------------------------------------ dead letters
    async def dead_letter_next(self, shard: int) -> Versioned[int]:
        data, etag = await self._ensure(dead_letter_next_key(shard), "0")
        return Versioned(int(json.loads(data)), etag)

    async def dead_letter_counts(self) -> list[int]:
        found = await self._bulk([dead_letter_next_key(s) for s in range(DEAD_LETTER_SHARDS)])
        return [int(json.loads(found.get(dead_letter_next_key(s), b"0"))) for s in range(DEAD_LETTER_SHARDS)]

    async def dead_letter_seen(self, dedupe_key: str) -> bool:
        data, _ = await self._read(seen_key(dedupe_key))
        return data is not None

    async def append_dead_letter(self, read: Versioned[int], letter: DeadLetter, ring: int) -> None:
        ops = [
            TransactionalStateOperation(
                key=slot_key(letter.shard, ring_slot(letter.seq, ring)), data=letter.model_dump_json()
            ),
            TransactionalStateOperation(
                key=dead_letter_next_key(letter.shard), data=str(read.value + 1), etag=read.etag
            ),
        ]
        if letter.dedupe_key:
            ops.append(
                TransactionalStateOperation(
                    key=seen_key(letter.dedupe_key),
                    data="1",
                    metadata={"ttlInSeconds": str(self.dedupe_ttl_seconds)},
                )
            )
        await self._transact(ops)

    async def dead_letters(self, wanted: Sequence[tuple[int, int]], ring: int) -> list[DeadLetter]:
        keys = [slot_key(shard, ring_slot(seq, ring)) for shard, seq in wanted]
        found = await self._bulk(keys)
        out = []
        for (_, seq), key in zip(wanted, keys, strict=True):
            raw = found.get(key)
            if raw is None:
                continue
            letter = DeadLetter.model_validate_json(raw)
            if letter.seq == seq:  # a slot may hold an entry from another retention setting
                out.append(letter)
        return out
