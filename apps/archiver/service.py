"""The archiver without Dapr: stage each message durably, write the staged readings out in batches.

Why staging: the archive wants big columnar chunks, but pub/sub hands over one message at a time
(in order, with the embedded broker) and a message may be acked only once it can no longer be lost.
Holding acks until a batch is written would stall delivery for the whole batching delay; acking at
once and batching in memory would lose the batch in a crash. So each message is first staged in the
state store (one small write, then the ack), and a flusher turns everything staged into Parquet chunks
through the `archive` binding and only then deletes it. A crash anywhere leaves the messages either
unacked (the broker redelivers them) or staged (the next flush writes them): at least once. A flush
repeated after a crash writes chunks with the same names (content-addressed), and whatever still
arrives twice is merged away by (machine, seq) when the archive is read.

Staging is split into SHARDS rings, a message going to the ring of its id's hash, so replicas and
concurrent deliveries rarely contend for one ring's etag. A ring is `first` (oldest unflushed slot),
`next` (slot the next message takes), the readings it holds and when its oldest one was staged.
Only a flusher moves `first` and only a stager moves `next`; within a process one lock per ring
serialises them, across replicas the ring's etag does.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from apps.archiver.settings import ArchiverSettings
from apps.common.archive import Block, blocks_from_readings, split_by_day
from apps.common.contracts import Reading

log = logging.getLogger("archiver")
T = TypeVar("T")

# Fixed, not a setting: a message's ring is part of its state keys, so another count would strand
# what is staged under the old one. 8 rings serve the Redis broker's 10 concurrent deliveries.
SHARDS: Final = 8
MAX_CONFLICTS: Final = 20
SOURCE: Final = "ingestion"


class Conflict(Exception):
    """Somebody else wrote what this write read (etag mismatch): read again and retry."""


@dataclass(frozen=True, slots=True)
class Versioned(Generic[T]):
    value: T
    etag: str | None


class Ring(BaseModel):
    model_config = ConfigDict(extra="forbid")

    first: int = 0
    next: int = 0
    readings: int = 0
    since: float | None = None  # epoch seconds (about) when the oldest unflushed message was staged


class StagedMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    readings: list[Reading]


class StagingStore(Protocol):
    async def ring(self, shard: int) -> Versioned[Ring]: ...

    async def stage(self, shard: int, read: Versioned[Ring], ring: Ring, message: StagedMessage) -> None:
        """Put `message` in slot `read.value.next` and save `ring`, atomically, if the ring is still as
        `read` (else Conflict)."""

    async def slots(self, shard: int, numbers: Sequence[int]) -> list[StagedMessage]:
        """The staged messages of those slots that still exist, in slot order."""

    async def release(self, shard: int, read: Versioned[Ring], ring: Ring, numbers: Sequence[int]) -> None:
        """Delete those slots and save `ring`, atomically, if the ring is still as `read`."""


class ArchiveWriter(Protocol):
    async def write_block(self, block: Block, source: str) -> str: ...


def shard_of(message_id: str) -> int:
    # stable across processes (Python's str hash is salted per process)
    return zlib.crc32(message_id.encode()) % SHARDS


@dataclass(frozen=True, slots=True)
class Backlog:
    messages: int
    readings: int
    oldest_seconds: float | None


class ArchiverService:
    def __init__(
        self,
        store: StagingStore,
        archive: ArchiveWriter,
        settings: ArchiverSettings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.archive = archive
        self.settings = settings
        self.clock = clock
        self._locks = [asyncio.Lock() for _ in range(SHARDS)]
        self._writes = asyncio.Semaphore(settings.write_concurrency)

    async def stage(self, message_id: str, readings: list[Reading]) -> None:
        """Keep one message's readings until a flush writes them; returns once they are durable."""
        shard = shard_of(message_id)
        message = StagedMessage(id=message_id, readings=readings)
        async with self._locks[shard]:
            for _ in range(MAX_CONFLICTS):
                read = await self.store.ring(shard)
                ring = read.value
                updated = Ring(
                    first=ring.first,
                    next=ring.next + 1,
                    readings=ring.readings + len(readings),
                    since=ring.since if ring.first < ring.next and ring.since is not None else self.clock(),
                )
                try:
                    await self.store.stage(shard, read, updated, message)
                    return
                except Conflict:
                    continue
        raise RuntimeError(f"staging ring {shard}: gave up after {MAX_CONFLICTS} etag conflicts")

    def _due(self, ring: Ring, force: bool) -> bool:
        if ring.first >= ring.next:
            return False
        if force or ring.readings >= self.settings.flush_readings:
            return True
        return ring.since is not None and self.clock() - ring.since >= self.settings.max_delay_seconds

    async def flush(self, force: bool = False) -> int:
        """Write out every ring that is due (all that hold anything, with `force`); readings written."""
        written = await asyncio.gather(*(self._flush_shard(s, force) for s in range(SHARDS)))
        return sum(written)

    async def _flush_shard(self, shard: int, force: bool) -> int:
        total = 0
        read = await self.store.ring(shard)
        while self._due(read.value, force):
            ring = read.value
            upto = min(ring.next, ring.first + self.settings.max_messages_per_flush)
            numbers = list(range(ring.first, upto))
            messages = await self.store.slots(shard, numbers)
            readings = [r for m in messages for r in m.readings]
            await self._write(readings)
            await self._release(shard, numbers, len(readings))
            total += len(readings)
            read = await self.store.ring(shard)
            force = force or read.value.readings >= self.settings.flush_readings
        return total

    async def _write(self, readings: list[Reading]) -> None:
        day_blocks = [day for block in blocks_from_readings(readings) for day in split_by_day(block)]

        async def write(block: Block) -> None:
            async with self._writes:
                await self.archive.write_block(block, SOURCE)

        await asyncio.gather(*(write(b) for b in day_blocks))

    async def _release(self, shard: int, numbers: list[int], readings: int) -> None:
        upto = numbers[-1] + 1
        async with self._locks[shard]:
            for _ in range(MAX_CONFLICTS):
                read = await self.store.ring(shard)
                ring = read.value
                if ring.first >= upto:
                    return  # another replica flushed these slots already
                left = ring.readings - readings if ring.first == numbers[0] else ring.readings
                rest = Ring(
                    first=upto,
                    next=ring.next,
                    readings=max(left, 0),
                    # what is left was staged while this flush ran: its age counts from now
                    since=self.clock() if upto < ring.next else None,
                )
                try:
                    await self.store.release(shard, read, rest, [n for n in numbers if n >= ring.first])
                    return
                except Conflict:
                    continue
        raise RuntimeError(f"staging ring {shard}: gave up after {MAX_CONFLICTS} etag conflicts")

    async def backlog(self) -> Backlog:
        rings = [(await self.store.ring(s)).value for s in range(SHARDS)]
        since = [r.since for r in rings if r.first < r.next and r.since is not None]
        return Backlog(
            messages=sum(r.next - r.first for r in rings),
            readings=sum(r.readings for r in rings),
            oldest_seconds=round(self.clock() - min(since), 3) if since else None,
        )

    async def run_flusher(self) -> None:
        """Flush whatever is due every `check_seconds`, for ever (a failed round is retried next time)."""
        while True:
            await asyncio.sleep(self.settings.check_seconds)
            try:
                written = await self.flush()
            except Exception as exc:  # the binding or the store may be down for a while: staged data waits
                log.warning("flush failed, staged readings kept for the next round: %s", exc)
                continue
            if written:
                log.info("archived %d readings", written)
