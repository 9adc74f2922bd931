"""The archiver without a sidecar: staged messages are written out in batches, and nothing staged is lost
when a flush fails or the archiver restarts (an in-memory state store with etags stands in for Dapr)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import pytest

from apps.archiver.service import (
    SHARDS,
    ArchiverService,
    Conflict,
    Ring,
    StagedMessage,
    Versioned,
    shard_of,
)
from apps.archiver.settings import ArchiverSettings
from apps.common.archive import Block, merge_blocks
from tests.unit.common.test_archive import reading


class MemoryStaging:
    """StagingStore with the optimistic concurrency of the Dapr state API (etag per ring)."""

    def __init__(self) -> None:
        self.rings: dict[int, tuple[Ring, int]] = {}
        self.staged: dict[tuple[int, int], StagedMessage] = {}

    async def ring(self, shard: int) -> Versioned[Ring]:
        ring, version = self.rings.setdefault(shard, (Ring(), 1))
        return Versioned(copy.deepcopy(ring), str(version))

    def _check(self, shard: int, read: Versioned[Ring]) -> int:
        version = self.rings.setdefault(shard, (Ring(), 1))[1]
        if read.etag != str(version):
            raise Conflict("etag mismatch")
        return version

    async def stage(self, shard: int, read: Versioned[Ring], ring: Ring, message: StagedMessage) -> None:
        version = self._check(shard, read)
        self.staged[(shard, read.value.next)] = message
        self.rings[shard] = (ring, version + 1)

    async def slots(self, shard: int, numbers: Sequence[int]) -> list[StagedMessage]:
        return [self.staged[(shard, n)] for n in numbers if (shard, n) in self.staged]

    async def release(self, shard: int, read: Versioned[Ring], ring: Ring, numbers: Sequence[int]) -> None:
        version = self._check(shard, read)
        for n in numbers:
            self.staged.pop((shard, n), None)
        self.rings[shard] = (ring, version + 1)


class RecordingArchive:
    def __init__(self) -> None:
        self.chunks: dict[str, Block] = {}
        self.fail = False

    async def write_block(self, block: Block, source: str) -> str:
        if self.fail:
            raise RuntimeError("binding down")
        path = f"{block.equipment_id}/{block.seq[0]}-{block.seq[-1]}"
        self.chunks[path] = block
        return path

    def archived(self) -> dict[str, list[int]]:
        return {eid: b.seq.tolist() for eid, b in merge_blocks(self.chunks.values()).items()}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def service(
    store: MemoryStaging, archive: RecordingArchive, clock: Clock, **settings: float
) -> ArchiverService:
    values = {"max_delay_seconds": 60.0, "flush_readings": 1000, "max_messages_per_flush": 500, **settings}
    return ArchiverService(store, archive, ArchiverSettings(**values), clock)


@pytest.fixture
def parts() -> tuple[MemoryStaging, RecordingArchive, Clock]:
    return MemoryStaging(), RecordingArchive(), Clock()


async def test_staged_readings_wait_for_the_delay_then_go_out_in_one_chunk_per_machine(parts) -> None:  # noqa: ANN001
    store, archive, clock = parts
    archiver = service(store, archive, clock)
    for seq in range(10):
        await archiver.stage(f"msg-{seq}", [reading(seq, "m1"), reading(seq, "m2")])
    backlog = await archiver.backlog()
    assert (backlog.messages, backlog.readings) == (10, 20)
    assert await archiver.flush() == 0 and archive.chunks == {}  # nothing is due yet
    clock.now += 61
    assert await archiver.flush() == 20
    assert archive.archived() == {"m1": list(range(10)), "m2": list(range(10))}
    assert len(archive.chunks) <= 2 * SHARDS  # batched: a chunk per machine per ring, not per message
    assert (await archiver.backlog()).messages == 0 and store.staged == {}


async def test_enough_readings_flush_before_the_delay(parts) -> None:  # noqa: ANN001
    store, archive, clock = parts
    archiver = service(store, archive, clock, flush_readings=5)
    ids = [f"msg-{seq}" for seq in range(40)]
    for seq, message in enumerate(ids):
        await archiver.stage(message, [reading(seq)])
    full = {s for s in range(SHARDS) if sum(shard_of(m) == s for m in ids) >= 5}
    assert full and len(full) < SHARDS  # some rings hold enough, some do not
    await archiver.flush()  # the delay has not passed
    written = {seq for block in archive.chunks.values() for seq in block.seq.tolist()}
    assert written == {seq for seq, m in enumerate(ids) if shard_of(m) in full}


async def test_a_failed_write_keeps_everything_staged_for_the_next_round(parts) -> None:  # noqa: ANN001
    store, archive, clock = parts
    archiver = service(store, archive, clock)
    await archiver.stage("a", [reading(0), reading(1)])
    archive.fail = True
    with pytest.raises(RuntimeError, match="binding down"):
        await archiver.flush(force=True)
    assert (await archiver.backlog()).readings == 2
    archive.fail = False
    assert await archiver.flush(force=True) == 2
    assert archive.archived() == {"m1": [0, 1]}


async def test_a_restarted_archiver_writes_what_the_last_one_staged(parts) -> None:  # noqa: ANN001
    store, archive, clock = parts
    first = service(store, archive, clock)
    for seq in range(25):
        await first.stage(f"msg-{seq}", [reading(seq)])
    del first  # a crash: nothing in memory survives, the state store does
    second = service(store, archive, clock)
    await second.stage("msg-25", [reading(25)])
    assert await second.flush(force=True) == 26
    assert archive.archived() == {"m1": list(range(26))}


async def test_a_long_backlog_goes_out_in_bounded_rounds(parts) -> None:  # noqa: ANN001
    store, archive, clock = parts
    archiver = service(store, archive, clock, max_messages_per_flush=2)
    ids = [f"msg-{i}" for i in range(60)]
    for i, message in enumerate(ids):
        await archiver.stage(message, [reading(i)])
    assert await archiver.flush(force=True) == 60
    busiest = max(sum(1 for m in ids if shard_of(m) == s) for s in range(SHARDS))
    assert len(archive.chunks) >= busiest / 2  # at most 2 messages per chunk write
    assert archive.archived() == {"m1": list(range(60))}


async def test_a_ring_changed_under_a_stager_is_read_again(parts) -> None:  # noqa: ANN001
    store, archive, clock = parts
    archiver = service(store, archive, clock)
    real_stage = store.stage
    calls = 0

    async def racing_stage(shard: int, read: Versioned[Ring], ring: Ring, message: StagedMessage) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:  # another replica staged in between
            await real_stage(shard, read, Ring(first=0, next=1, readings=1, since=clock()), message)
        await real_stage(shard, read, ring, message)

    store.stage = racing_stage  # type: ignore[method-assign]
    await archiver.stage("x", [reading(7)])
    ring = (await store.ring(shard_of("x"))).value
    assert (ring.first, ring.next, ring.readings) == (0, 2, 2)
