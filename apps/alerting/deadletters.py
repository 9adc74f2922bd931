"""The dead-letter log: messages that could not be processed, kept for an operator.

Sharded rings in the state store (key layout in store.py), so about the newest `retention` letters
are kept, and a redelivery of a CloudEvent already recorded is dropped.
"""

from __future__ import annotations

import asyncio

from apps.alerting.domain import DeadLetter, newest_letters, recent_seqs
from apps.alerting.store import DEAD_LETTER_SHARDS, AlertingRepository, dead_letter_shard, retrying


class DeadLetterLog:
    def __init__(
        self, repo: AlertingRepository, retention: int = 10_000, max_conflict_retries: int = 20
    ) -> None:
        self.repo = repo
        self.max_conflict_retries = max_conflict_retries
        # Each shard is a ring of its share of the retention, so about the newest `retention` letters
        # are kept (letters spread evenly over the shards).
        self.ring = -(-retention // DEAD_LETTER_SHARDS)
        self._locks = [asyncio.Lock() for _ in range(DEAD_LETTER_SHARDS)]

    async def record(self, letter: DeadLetter) -> DeadLetter | None:
        """Append `letter`; None when the same CloudEvent was already recorded (a redelivery)."""
        shard = dead_letter_shard(letter)

        async def attempt() -> DeadLetter:
            read = await self.repo.dead_letter_next(shard)
            stored = letter.model_copy(update={"shard": shard, "seq": read.value})
            await self.repo.append_dead_letter(read, stored, self.ring)
            return stored

        # Redeliveries of one CloudEvent share a shard, so holding its lock across the dedupe check
        # and the append keeps this process from recording one twice.
        async with self._locks[shard]:
            if letter.dedupe_key and await self.repo.dead_letter_seen(letter.dedupe_key):
                return None
            return await retrying("dead letter", attempt, self.max_conflict_retries)

    async def newest(self, limit: int) -> list[DeadLetter]:
        # The newest `limit` of all shards are among the newest `limit` of each.
        counts = await self.repo.dead_letter_counts()
        wanted = [
            (shard, seq) for shard, count in enumerate(counts) for seq in recent_seqs(count, self.ring, limit)
        ]
        return newest_letters(await self.repo.dead_letters(wanted, self.ring), limit)
