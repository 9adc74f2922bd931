"""The alerting service core: handles delivered events and API calls over an AlertingRepository.

Transport-free (no FastAPI, no Dapr client): app.py decodes requests into calls here, and the unit
tests drive it with an in-memory repository. The rules themselves are in domain.py; this module
orchestrates read -> pure rule -> conditional write, retrying on etag conflicts.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import TypeVar

from apps.alerting.domain import (
    AlertFilter,
    AlertNotFound,
    AlertRecord,
    AlertSummary,
    DeadLetter,
    Envelope,
    FleetPublic,
    MalformedEvent,
    acknowledge,
    apply_event,
    dead_letter_from,
    equipment_of,
    is_newer,
    malformed_letter,
    newest_first,
    newest_letters,
    next_episode,
    parse_alert,
    parse_snapshot,
    prune,
    recent_seqs,
    summarize_fleet,
    supersede,
    superseded_ids,
)
from apps.alerting.notifier import Notifier
from apps.alerting.store import (
    DEAD_LETTER_SHARDS,
    INDEX_SHARDS,
    AlertingRepository,
    Conflict,
    dead_letter_shard,
    shard_of,
)
from apps.common.contracts import Alert, HealthSnapshot

log = logging.getLogger("alerting")

R = TypeVar("R")


class Outcome(StrEnum):
    """What a subscription handler tells Dapr (the `status` of its answer)."""

    SUCCESS = "SUCCESS"
    DROP = "DROP"  # can never succeed: Dapr logs it and does not redeliver
    RETRY = "RETRY"


def utcnow() -> datetime:
    return datetime.now(UTC)


class AlertingService:
    def __init__(
        self,
        repo: AlertingRepository,
        notifier: Notifier,
        *,
        dead_letter_retention: int = 10_000,
        max_alerts: int = 50_000,
        max_conflict_retries: int = 20,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.repo = repo
        self.notifier = notifier
        # Each dead-letter shard is a ring of its share of the retention, so about the newest
        # dead_letter_retention letters are kept (letters spread evenly over the shards).
        self.dead_letter_ring = -(-dead_letter_retention // DEAD_LETTER_SHARDS)
        # Each index shard prunes on its own (reading every shard per write is what sharding avoids),
        # so the machines' hash spread makes the total about max_alerts.
        self.max_alerts_per_shard = -(-max_alerts // INDEX_SHARDS)
        self.max_conflict_retries = max_conflict_retries
        self.clock = clock
        # Writers in this process queue up per index shard instead of colliding on its etag; etags
        # still guard against other replicas.
        self._alert_locks = [asyncio.Lock() for _ in range(INDEX_SHARDS)]
        self._fleet_locks = [asyncio.Lock() for _ in range(INDEX_SHARDS)]
        self._dead_letter_locks = [asyncio.Lock() for _ in range(DEAD_LETTER_SHARDS)]

    async def _retrying(self, what: str, attempt: Callable[[], Awaitable[R]]) -> R:
        for n in range(self.max_conflict_retries):
            try:
                return await attempt()
            except Conflict:
                # Another writer got there first: back off a little (jittered) and read again.
                await asyncio.sleep(random.uniform(0, 0.005 * (n + 1)))
        raise RuntimeError(f"{what}: gave up after {self.max_conflict_retries} etag conflicts")

    # ------------------------------------------------------------------ subscriptions
    async def on_alert(self, envelope: Envelope, topic: str) -> Outcome:
        try:
            alert = parse_alert(envelope.data)
        except MalformedEvent as exc:
            return await self._drop(envelope, topic, str(exc))
        await self.apply_alert(alert)
        return Outcome.SUCCESS

    async def on_health(self, envelope: Envelope, topic: str) -> Outcome:
        try:
            snapshot = parse_snapshot(envelope.data)
        except MalformedEvent as exc:
            return await self._drop(envelope, topic, str(exc))
        await self.record_snapshot(snapshot)
        return Outcome.SUCCESS

    async def on_dead_letter(self, envelope: Envelope, topic: str) -> Outcome:
        letter = dead_letter_from(envelope.data, topic, envelope.event_id, envelope.source, self.clock())
        await self.record_dead_letter(letter)
        return Outcome.SUCCESS

    async def on_undecodable(self, body: bytes, topic: str, reason: str) -> Outcome:
        """A delivery whose body is not a CloudEvent at all: keep what came, tell Dapr to drop it."""
        text = body[:4096].decode(errors="replace")
        return await self._drop(Envelope(text, None, None, topic), topic, reason)

    async def _drop(self, envelope: Envelope, topic: str, reason: str) -> Outcome:
        # Kept as a dead letter so nothing is lost silently, and DROPped so Dapr does not redeliver a
        # message that can never pass.
        log.warning("dropping malformed %s message %s: %s", topic, envelope.event_id, reason)
        await self.record_dead_letter(
            malformed_letter(envelope.data, topic, envelope.event_id, envelope.source, reason, self.clock())
        )
        return Outcome.DROP

    # ------------------------------------------------------------------ alerts
    async def apply_alert(self, alert: Alert) -> AlertRecord:
        """Apply one alert event; idempotent, and any delivery order converges (see domain.py)."""

        async def attempt() -> tuple[AlertRecord, list[tuple[AlertRecord, AlertRecord | None]]]:
            read = await self.repo.alert_index(alert.equipment_id)
            older = superseded_ids(read.value, alert)
            current = await self.repo.get_alerts([alert.id, *older])
            previous = current.get(alert.id)
            record = apply_event(previous, alert)
            later = next_episode(read.value, alert)
            if later is not None:  # a late event of an episode that has already been replaced
                record = supersede(record, later.episode, later.raised_at)
            changed: list[tuple[AlertRecord, AlertRecord | None]] = []
            if record != previous:
                changed.append((record, previous))
            for old_id in older:
                old = current.get(old_id)
                if old is not None and (new := supersede(old, alert.episode, alert.raised_at)) != old:
                    changed.append((new, old))
            if not changed:
                return record, []  # duplicate or stale: nothing to write
            index = dict(read.value)
            for r, _ in changed:
                index[r.id] = AlertSummary.of(r)
            written = {r.id for r, _ in changed}
            deletes = [i for i in prune(index, self.max_alerts_per_shard) if i not in written]
            for i in deletes:
                del index[i]
            await self.repo.commit_alerts(alert.equipment_id, read, index, [r for r, _ in changed], deletes)
            return record, changed

        async with self._alert_locks[shard_of(alert.equipment_id)]:
            record, changed = await self._retrying(f"alert {alert.id}", attempt)
        for new, old in changed:
            if old is None or (new.state, new.severity) != (old.state, old.severity):
                await self._notify(new, old)
        return record

    async def acknowledge(self, alert_id: str, by: str | None = None) -> AlertRecord:
        equipment_id = equipment_of(alert_id)

        async def attempt() -> AlertRecord:
            read = await self.repo.alert_index(equipment_id)
            current = (await self.repo.get_alerts([alert_id])).get(alert_id)
            if current is None:
                raise AlertNotFound(f"no alert with id {alert_id!r}")
            record = acknowledge(current, self.clock(), by)  # AlertAlreadyCleared if cleared
            if record != current:
                index = {**read.value, record.id: AlertSummary.of(record)}
                await self.repo.commit_alerts(equipment_id, read, index, [record], [])
            return record

        async with self._alert_locks[shard_of(equipment_id)]:
            return await self._retrying(f"acknowledge {alert_id}", attempt)

    async def get_alert(self, alert_id: str) -> AlertRecord:
        found = (await self.repo.get_alerts([alert_id])).get(alert_id)
        if found is None:
            raise AlertNotFound(f"no alert with id {alert_id!r}")
        return found

    async def list_alerts(self, flt: AlertFilter, limit: int | None = None) -> list[AlertRecord]:
        if flt.equipment_id is None:
            index = await self.repo.all_alerts()
        else:  # one machine's alerts are all in its shard
            index = (await self.repo.alert_index(flt.equipment_id)).value
        ids = newest_first(index, flt, limit)
        found = await self.repo.get_alerts(ids)
        # The index and the records are written in one transaction, so a miss here is only a
        # concurrent prune: skip it rather than fail the listing.
        return [found[i] for i in ids if i in found]

    async def _notify(self, alert: AlertRecord, previous: AlertRecord | None) -> None:
        try:
            await self.notifier.notify(alert, previous)
        except Exception:  # a notification channel problem must not undo or retry the stored change
            log.exception("notifier failed for alert %s", alert.id)

    # ------------------------------------------------------------------ fleet
    async def record_snapshot(self, snapshot: HealthSnapshot) -> bool:
        """Keep `snapshot` if it is the machine's newest; False when an older or same one arrived late."""

        async def attempt() -> bool:
            read = await self.repo.get_snapshot(snapshot.equipment_id)
            if read.value is not None and snapshot == read.value:
                return False
            if not is_newer(read.value, snapshot):
                return False
            await self.repo.save_snapshot(read, snapshot)
            return True

        # A new machine's first snapshot writes its fleet index shard, so the creators of a fleet
        # starting up would collide there; in this process they queue per shard instead. Updates of
        # known machines queue too, which costs little: a process's concurrent deliveries (10 per
        # subscription by default) rarely outnumber the shards.
        async with self._fleet_locks[shard_of(snapshot.equipment_id)]:
            return await self._retrying(f"health of {snapshot.equipment_id}", attempt)

    async def fleet(self, status: str | None = None) -> FleetPublic:
        return summarize_fleet(await self.repo.snapshots(), status)

    # ------------------------------------------------------------------ dead letters
    async def record_dead_letter(self, letter: DeadLetter) -> DeadLetter | None:
        """Append `letter`; None when the same CloudEvent was already recorded (a redelivery)."""

        shard = dead_letter_shard(letter)

        async def attempt() -> DeadLetter:
            read = await self.repo.dead_letter_next(shard)
            stored = letter.model_copy(update={"shard": shard, "seq": read.value})
            await self.repo.append_dead_letter(read, stored, self.dead_letter_ring)
            return stored

        # Redeliveries of one CloudEvent share a shard, so holding its lock across the dedupe check
        # and the append keeps this process from recording one twice.
        async with self._dead_letter_locks[shard]:
            if letter.dedupe_key and await self.repo.dead_letter_seen(letter.dedupe_key):
                return None
            return await self._retrying("dead letter", attempt)

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        # The newest `limit` of all shards are among the newest `limit` of each.
        counts = await self.repo.dead_letter_counts()
        wanted = [
            (shard, seq)
            for shard, count in enumerate(counts)
            for seq in recent_seqs(count, self.dead_letter_ring, limit)
        ]
        return newest_letters(await self.repo.dead_letters(wanted, self.dead_letter_ring), limit)
