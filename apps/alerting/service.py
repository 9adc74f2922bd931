"""The alerting service core: delivered events and operators' actions over the repositories.

Transport-free (no FastAPI, no Dapr client): app.py decodes requests into calls here, and the unit
tests drive it with in-memory fakes. The rules are in lifecycle.py, domain.py and notifications.py;
this module orchestrates read -> pure rule -> conditional write, retrying on etag conflicts, and
writes each alert change with the notifications it owes (the outbox) in one transaction.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from apps.alerting import lifecycle
from apps.alerting.deadletters import DeadLetterLog
from apps.alerting.domain import (
    Envelope,
    M,
    RetiredMachine,
    clamp_future,
    dead_letter_from,
    malformed_letter,
    parse_snapshot,
)
from apps.alerting.errors import AlertNotFound, MalformedEvent
from apps.alerting.fleet import FleetBook
from apps.alerting.lifecycle import (
    AlertFilter,
    AlertRecord,
    AlertSummary,
    apply_event,
    equipment_of,
    new_changes,
    newest_first,
    next_episode,
    open_ids,
    parse_alert,
    prune,
    supersede,
    superseded_ids,
)
from apps.alerting.notifications import NotifyPolicy, notification_for
from apps.alerting.ports import Machines
from apps.alerting.store import INDEX_SHARDS, AlertingRepository, OutboxWrite, Versioned, retrying, shard_of
from apps.common.contracts import EQUIPMENT_ID_PATTERN, Alert, HealthSnapshot
from apps.common.metrics import record_alert_change, record_clock_ahead

log = logging.getLogger("alerting")

Changed = list[tuple[AlertRecord, AlertRecord | None]]  # (new, old) per alert written


class Outcome(StrEnum):
    """What a subscription handler tells Dapr (the `status` of its answer)."""

    SUCCESS = "SUCCESS"
    DROP = "DROP"  # can never succeed: Dapr logs it and does not redeliver
    RETRY = "RETRY"


# NTP keeps hosts within a second; minutes of slack still refuse a clock set years ahead.
DEFAULT_MAX_CLOCK_SKEW = timedelta(minutes=5)


def utcnow() -> datetime:
    return datetime.now(UTC)


class AlertingService:
    def __init__(
        self,
        repo: AlertingRepository,
        machines: Machines,
        *,
        policy: NotifyPolicy | None = None,
        dead_letter_retention: int = 10_000,
        max_alerts: int = 50_000,
        max_conflict_retries: int = 20,
        clock: Callable[[], datetime] = utcnow,
        max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW,
        on_notify: Callable[[], None] = lambda: None,
    ) -> None:
        self.repo = repo
        self.machines = machines
        self.policy = policy or NotifyPolicy.default()
        self.fleet = FleetBook(repo, max_conflict_retries)
        self.letters = DeadLetterLog(repo, dead_letter_retention, max_conflict_retries)
        # Each index shard prunes on its own (reading every shard per write is what sharding avoids),
        # so the machines' hash spread makes the total about max_alerts.
        self.max_alerts_per_shard = -(-max_alerts // INDEX_SHARDS)
        self.max_conflict_retries = max_conflict_retries
        self.clock = clock
        # How far ahead of this process's clock a sender's time may be; messages beyond it per topic.
        self.max_clock_skew = max_clock_skew
        self.clock_skew_clamped: Counter[str] = Counter()
        self.on_notify = on_notify  # called once notifications are committed: wakes the sender
        # Writers in this process queue up per index shard instead of colliding on its etag; etags
        # still guard against other replicas.
        self._alert_locks = [asyncio.Lock() for _ in range(INDEX_SHARDS)]

    # ------------------------------------------------------------------ subscriptions
    async def on_alert(self, envelope: Envelope, topic: str) -> Outcome:
        try:
            alert = parse_alert(envelope.data)
        except MalformedEvent as exc:
            return await self._drop(envelope, topic, str(exc))
        await self.apply_alert(self._not_ahead(alert, topic))
        return Outcome.SUCCESS

    async def on_health(self, envelope: Envelope, topic: str) -> Outcome:
        try:
            snapshot = parse_snapshot(envelope.data)
        except MalformedEvent as exc:
            return await self._drop(envelope, topic, str(exc))
        await self.fleet.record(self._not_ahead(snapshot, topic))
        return Outcome.SUCCESS

    async def on_health_many(self, envelopes: Sequence[Envelope], topic: str) -> list[Outcome]:
        """`on_health` for each event of a bulk delivery, the snapshots recorded together
        (FleetBook.record_many); one that is not a snapshot is DROPped and kept as a dead letter.
        Raises when the store fails: then none of them may be taken as recorded."""
        outcomes: list[Outcome] = []
        snapshots: list[HealthSnapshot] = []
        for envelope in envelopes:
            try:
                snapshot = parse_snapshot(envelope.data)
            except MalformedEvent as exc:
                outcomes.append(await self._drop(envelope, topic, str(exc)))
                continue
            snapshots.append(self._not_ahead(snapshot, topic))
            outcomes.append(Outcome.SUCCESS)
        await self.fleet.record_many(snapshots)
        return outcomes

    def _not_ahead(self, item: M, topic: str) -> M:
        """`item` with its times clamped to now when a sender's clock runs ahead (logged and counted):
        kept, since the machine's state is real, but never sorted after what really comes later."""
        now = self.clock()
        clamped_item, fields = clamp_future(item, now, self.max_clock_skew)
        if fields:
            self.clock_skew_clamped[topic] += 1
            record_clock_ahead(topic)
            log.warning(
                "%s message of %s: %s more than %s ahead of alerting's clock; taken as received at %s",
                topic,
                getattr(item, "equipment_id", "?"),
                ", ".join(fields),
                self.max_clock_skew,
                now.isoformat(),
            )
        return clamped_item

    async def on_dead_letter(self, envelope: Envelope, topic: str) -> Outcome:
        letter = dead_letter_from(envelope.data, topic, envelope.event_id, envelope.source, self.clock())
        await self.letters.record(letter)
        return Outcome.SUCCESS

    async def on_undecodable(self, body: bytes, topic: str, reason: str) -> Outcome:
        """A delivery whose body is not a CloudEvent at all: keep what came, tell Dapr to drop it."""
        text = body[:4096].decode(errors="replace")
        return await self._drop(Envelope(text, None, None, topic), topic, reason)

    async def _drop(self, envelope: Envelope, topic: str, reason: str) -> Outcome:
        # Kept as a dead letter so nothing is lost silently, and DROPped so Dapr does not redeliver a
        # message that can never pass.
        log.warning("dropping malformed %s message %s: %s", topic, envelope.event_id, reason)
        await self.letters.record(
            malformed_letter(envelope.data, topic, envelope.event_id, envelope.source, reason, self.clock())
        )
        return Outcome.DROP

    # ------------------------------------------------------------------ the machine's events
    async def apply_alert(self, alert: Alert) -> AlertRecord:
        """Apply one alert event; idempotent, and any delivery order converges (see lifecycle.py)."""

        async def attempt() -> tuple[AlertRecord, Changed]:
            read = await self.repo.alert_index(alert.equipment_id)
            older = superseded_ids(read.value, alert)
            current = await self.repo.get_alerts([alert.id, *older])
            previous = current.get(alert.id)
            record = apply_event(previous, alert)
            later = next_episode(read.value, alert)
            if later is not None:  # a late event of an episode that has already been replaced
                record = supersede(record, later.episode, later.raised_at)
            changed: Changed = [(record, previous)] if record != previous else []
            for old_id in older:
                old = current.get(old_id)
                if old is not None and (new := supersede(old, alert.episode, alert.raised_at)) != old:
                    changed.append((new, old))
            await self._write(alert.equipment_id, read, changed)
            return record, changed

        async with self._alert_locks[shard_of(alert.equipment_id)]:
            record, changed = await retrying(f"alert {alert.id}", attempt, self.max_conflict_retries)
        self._announce(changed)
        return record

    # ------------------------------------------------------------------ operators' actions
    async def acknowledge(self, alert_id: str, by: str, note: str = "") -> AlertRecord:
        """404 if unknown (whatever the id looks like), 409 if cleared or resolved."""
        return await self._operator(alert_id, lambda r: lifecycle.acknowledge(r, self.clock(), by, note))

    async def resolve(self, alert_id: str, by: str, note: str = "") -> AlertRecord:
        """Close an alert the machine has not cleared. Its actor ends the episode first, so a condition
        that persists opens a new alert; if the actor does not answer nothing changes (503)."""
        current = await self.get_alert(alert_id)
        lifecycle.resolve(current, self.clock(), by, note)  # 409 before the actor is asked
        ended = await self.machines.end_episode(current.equipment_id, current.kind, current.episode)
        if not ended:
            log.info("alert %s: its actor had already moved past episode %d", alert_id, current.episode)
        return await self._operator(alert_id, lambda r: lifecycle.resolve(r, self.clock(), by, note))

    async def retire(self, equipment_id: str, by: str, note: str = "") -> RetiredMachine:
        """Stop watching a machine: its actor stops (no more silence alerts), its open alerts are
        resolved, and it leaves the fleet view. 404 if alerting never heard of it; retiring a retired
        machine (a client's retry) answers its retirement again."""
        if not re.fullmatch(EQUIPMENT_ID_PATTERN, equipment_id):
            raise AlertNotFound(f"no machine {equipment_id!r}")
        if not await self.fleet.known(equipment_id):
            before = await self.repo.retired(equipment_id)
            if before is not None:
                return before
            if not await self._has_alerts(equipment_id):
                raise AlertNotFound(f"no machine {equipment_id!r}")
        retired_at = await self.machines.retire(equipment_id) or self.clock()
        why = "machine retired" + (f": {note}" if note else "")
        resolved = []
        for alert_id in open_ids((await self.repo.alert_index(equipment_id)).value, equipment_id):
            record = await self._operator(alert_id, lambda r: _resolve_open(r, self.clock(), by, why))
            resolved.append(record.id)
        retired = RetiredMachine(
            equipment_id=equipment_id, retired_at=retired_at, by=by, note=note, resolved_alerts=resolved
        )
        await self.fleet.remove(retired)
        said = f" ({note})" if note else ""
        log.warning("machine %s retired by %s%s; alerts resolved: %s", equipment_id, by, said, resolved)
        return retired

    async def _operator(self, alert_id: str, change: Callable[[AlertRecord], AlertRecord]) -> AlertRecord:
        equipment_id = equipment_of(alert_id)

        async def attempt() -> tuple[AlertRecord, Changed]:
            read = await self.repo.alert_index(equipment_id)
            current = (await self.repo.get_alerts([alert_id])).get(alert_id)
            if current is None:
                raise AlertNotFound(f"no alert with id {alert_id!r}")
            record = change(current)  # AlertClosed (409) if it can take no more
            changed: Changed = [(record, current)] if record != current else []
            await self._write(equipment_id, read, changed)
            return record, changed

        async with self._alert_locks[shard_of(equipment_id)]:
            record, changed = await retrying(f"{alert_id}", attempt, self.max_conflict_retries)
        self._announce(changed)
        return record

    # ------------------------------------------------------------------ reads
    async def get_alert(self, alert_id: str) -> AlertRecord:
        equipment_of(alert_id)  # 404 for what cannot be an alert id, before asking the store
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

    # ------------------------------------------------------------------ writing
    async def _write(
        self, equipment_id: str, read: Versioned[lifecycle.AlertIndex], changed: Changed
    ) -> None:
        """Commit `changed`, the shard's index and the notifications the changes owe, atomically."""
        if not changed:
            return  # duplicate, stale or no-op: nothing to write
        index = dict(read.value)
        for record, _ in changed:
            index[record.id] = AlertSummary.of(record)
        written = {r.id for r, _ in changed}
        deletes = [i for i in prune(index, self.max_alerts_per_shard) if i not in written]
        for i in deletes:
            del index[i]
        now = self.clock()
        owed = [
            notification_for(new, c, uuid.uuid4().hex, now)
            for new, old in changed
            for c in new_changes(old, new)
            if self.policy.wants(c, new.severity)
        ]
        outbox = OutboxWrite(await self.repo.pending_notifications(equipment_id), owed) if owed else None
        await self.repo.commit_alerts(equipment_id, read, index, [r for r, _ in changed], deletes, outbox)

    def _announce(self, changed: Changed) -> None:
        """Log each committed change, and wake the sender when one owes a notification."""
        notify = False
        for new, old in changed:
            for c in new_changes(old, new):
                record_alert_change(new.kind, c.state)
                note = f" ({c.note})" if c.note else ""
                log.warning(
                    "alert %s: %s by %s -> %s/%s%s: %s",
                    new.id,
                    c.action,
                    c.by,
                    c.state,
                    new.severity,
                    note,
                    new.message,
                )
                notify |= self.policy.wants(c, new.severity)
        if notify:
            self.on_notify()

    async def _has_alerts(self, equipment_id: str) -> bool:
        index = (await self.repo.alert_index(equipment_id)).value
        return any(s.equipment_id == equipment_id for s in index.values())


def _resolve_open(record: AlertRecord, at: datetime, by: str, note: str) -> AlertRecord:
    """Resolve a retired machine's alert, unless it closed in the meantime (nothing to do then)."""
    return record if record.state in lifecycle.CLOSED else lifecycle.resolve(record, at, by, note)
