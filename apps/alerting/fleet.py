"""The fleet view alerting keeps: the latest HealthSnapshot of every machine it watches.

Snapshots arrive unordered and more than once; only a machine's newest is kept. A retired machine
leaves the view, and only a snapshot newer than its retirement (it sends readings again) brings it
back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from apps.alerting.domain import FleetPublic, RetiredMachine, is_newer, revives, summarize_fleet
from apps.alerting.store import INDEX_SHARDS, AlertingRepository, retrying, shard_of
from apps.common.contracts import HealthSnapshot


class FleetBook:
    def __init__(self, repo: AlertingRepository, max_conflict_retries: int = 20) -> None:
        self.repo = repo
        self.max_conflict_retries = max_conflict_retries
        # A new machine's first snapshot writes its fleet index shard, so the creators of a fleet
        # starting up would collide there; in this process they queue per shard instead. Updates of
        # known machines queue too, which costs little: a process's concurrent deliveries (10 per
        # subscription by default) rarely outnumber the shards.
        self._locks = [asyncio.Lock() for _ in range(INDEX_SHARDS)]

    async def record(self, snapshot: HealthSnapshot) -> bool:
        """Keep `snapshot` if it is the machine's newest; False when an older or same one arrived late,
        or the machine was retired after it."""

        async def attempt() -> bool:
            read = await self.repo.get_snapshot(snapshot.equipment_id)
            if read.value is not None and snapshot == read.value:
                return False
            if not is_newer(read.value, snapshot):
                return False
            if read.value is None and not revives(await self.repo.retired(snapshot.equipment_id), snapshot):
                return False
            await self.repo.save_snapshot(read, snapshot)
            return True

        async with self._locks[shard_of(snapshot.equipment_id)]:
            return await retrying(f"health of {snapshot.equipment_id}", attempt, self.max_conflict_retries)

    async def record_many(self, snapshots: Sequence[HealthSnapshot]) -> None:
        """`record` each of `snapshots` (a bulk delivery): the known machines' newest ones with one bulk
        read and one transaction (etag-guarded per machine, read again and retried on a conflict); a
        machine new to the fleet goes through `record`, which creates it in its index shard."""
        newest: dict[str, HealthSnapshot] = {}
        for snapshot in snapshots:
            kept = newest.get(snapshot.equipment_id)
            if kept is None or is_newer(kept, snapshot):
                newest[snapshot.equipment_id] = snapshot
        if not newest:
            return

        async def attempt() -> list[HealthSnapshot]:
            stored = await self.repo.get_snapshots(list(newest))
            writes = [
                (read, snapshot)
                for equipment_id, snapshot in newest.items()
                if (read := stored.get(equipment_id)) is not None
                and snapshot != read.value
                and is_newer(read.value, snapshot)
            ]
            if writes:
                await self.repo.save_snapshots(writes)
            return [snapshot for equipment_id, snapshot in newest.items() if equipment_id not in stored]

        new = await retrying(f"health of {len(newest)} machines", attempt, self.max_conflict_retries)
        for snapshot in new:
            await self.record(snapshot)

    async def known(self, equipment_id: str) -> bool:
        return (await self.repo.get_snapshot(equipment_id)).value is not None

    async def remove(self, retired: RetiredMachine) -> None:
        async with self._locks[shard_of(retired.equipment_id)]:
            await retrying(
                f"retire {retired.equipment_id}",
                lambda: self.repo.retire_machine(retired),
                self.max_conflict_retries,
            )

    async def view(self, status: str | None = None) -> FleetPublic:
        return summarize_fleet(await self.repo.snapshots(), status)
