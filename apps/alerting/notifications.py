"""Notifications of alert changes, as pure rules: which changes are sent, what is sent, when to try
again, and what the delivery status says.

An alert change and its notification are written to the state store in one transaction (the outbox,
outbox.py); the sender (sender.py) delivers them through the `notifications` output binding. Each
notification has an id made once, when the change is written, and sent as the `Idempotency-Key`
header on every attempt, so the receiver sees one change once however often it is retried (a sender
killed after the send but before recording it sends it again).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, get_args

from pydantic import BaseModel, ConfigDict, Field

from apps.alerting.lifecycle import Action, AlertChange, AlertRecord
from apps.common.contracts import Severity

# Supersession is alerting's bookkeeping (the new episode's own `open` says it all): never sent.
NOTIFIABLE: Final = tuple(a for a in get_args(Action) if a != "supersede")
# What is sent by default: every change of the condition, and an operator's resolve (acknowledgements
# are the operators' own bookkeeping). An escalation always makes the alert critical.
DEFAULT_WARNING: Final = "open,reopen,clear,resolve"
DEFAULT_CRITICAL: Final = "open,reopen,escalate,clear,resolve"
ABANDONED_KEPT: Final = 20  # notifications given up that the status lists
PENDING_LISTED: Final = 100  # pending notifications the status lists


@dataclass(frozen=True, slots=True)
class NotifyPolicy:
    """Which changes are sent, per severity of the alert."""

    warning: frozenset[str]
    critical: frozenset[str]

    @classmethod
    def parse(cls, warning: str, critical: str) -> NotifyPolicy:
        """From comma-separated action lists ("open,escalate,clear"); ValueError naming a bad one."""
        return cls(_actions(warning, "warning"), _actions(critical, "critical"))

    @classmethod
    def default(cls) -> NotifyPolicy:
        return cls.parse(DEFAULT_WARNING, DEFAULT_CRITICAL)

    def wants(self, change: AlertChange, severity: Severity) -> bool:
        return change.action in (self.critical if severity == "critical" else self.warning)


def _actions(text: str, severity: str) -> frozenset[str]:
    actions = frozenset(a.strip() for a in text.split(",") if a.strip())
    unknown = sorted(actions - set(NOTIFIABLE))
    if unknown:
        raise ValueError(f"{severity}: unknown alert changes {unknown}; known: {', '.join(NOTIFIABLE)}")
    return actions


class Notification(BaseModel):
    """One alert change to deliver, and how its delivery is going."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Made once per change: the Idempotency-Key of every attempt.")
    alert_id: str
    equipment_id: str
    action: Action
    severity: Severity
    at: datetime = Field(description="When the change happened.")
    payload: dict[str, Any] = Field(description="The JSON body sent to the webhook.")
    created_at: datetime = Field(description="When the change and this notification were written.")
    attempts: int = 0
    next_attempt_at: datetime
    last_attempt_at: datetime | None = None
    last_error: str | None = None
    # A sender sending it holds it until then (another replica leaves it alone); a sender that dies
    # mid-send lets it go when this passes, and the next attempt reuses the same id.
    claimed_until: datetime | None = None


def notification_for(record: AlertRecord, change: AlertChange, key: str, now: datetime) -> Notification:
    return Notification(
        id=key,
        alert_id=record.id,
        equipment_id=record.equipment_id,
        action=change.action,
        severity=record.severity,
        at=change.at,
        payload=payload(record, change, key),
        created_at=now,
        next_attempt_at=now,
    )


def payload(record: AlertRecord, change: AlertChange, key: str) -> dict[str, Any]:
    """What the webhook gets: the change and the alert as it stands. `text` is the one-line summary
    chat webhooks (Slack, Teams, Mattermost incoming webhooks) display as is."""
    who = "" if change.by in ("equipment", "alerting") else f" by {change.by}"
    note = f": {change.note}" if change.note else ""
    reading = change.reading or record.reading
    return {
        "id": key,
        "alert_id": record.id,
        "equipment_id": record.equipment_id,
        "kind": record.kind,
        "episode": record.episode,
        "change": change.action,
        "by": change.by,
        "note": change.note,
        "at": change.at.isoformat(),
        "state": change.state,
        "severity": record.severity,
        "message": record.message,
        "predicted_rul": record.predicted_rul,
        "reading": None if reading is None else reading.model_dump(mode="json"),
        "raised_at": record.raised_at.isoformat(),
        "text": f"[{record.severity}] {record.id} {change.action}{who}{note}: {record.message}",
    }


def backoff(attempts: int, initial: float, maximum: float) -> timedelta:
    """Wait before the next attempt after `attempts` failed ones: doubling, capped."""
    return timedelta(seconds=min(initial * 2 ** max(attempts - 1, 0), maximum))


def heads(pending: Iterable[Notification]) -> list[Notification]:
    """Per alert its oldest pending notification: a receiver gets an alert's changes in order, so a
    later one waits for the earlier (changes of one commit time by the change's own time)."""
    first: dict[str, Notification] = {}
    for n in sorted(pending, key=lambda n: (n.created_at, n.at, n.id)):
        first.setdefault(n.alert_id, n)
    return list(first.values())


def next_to_send(pending: Iterable[Notification], now: datetime) -> list[Notification]:
    """What to send now: the alerts' heads that are due and that no sender holds."""
    return [n for n in heads(pending) if _ready_at(n) <= now]


def next_due(pending: Iterable[Notification]) -> datetime | None:
    """When the earliest head may be tried (None: nothing pending)."""
    return min((_ready_at(n) for n in heads(pending)), default=None)


def _ready_at(n: Notification) -> datetime:
    return max(n.next_attempt_at, n.claimed_until or n.next_attempt_at)


# ----------------------------------------------------------------------------------- the status
class Abandoned(BaseModel):
    id: str
    alert_id: str
    action: Action
    attempts: int
    created_at: datetime
    last_error: str | None


class DeliveryStatus(BaseModel):
    """What the sender keeps about deliveries (one record, written after each attempt)."""

    delivered: int = 0
    last_delivered_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    abandoned: int = 0
    recent_abandoned: list[Abandoned] = Field(default_factory=list)

    def succeeded(self, at: datetime) -> DeliveryStatus:
        return self.model_copy(
            update={"delivered": self.delivered + 1, "last_delivered_at": at, "consecutive_failures": 0}
        )

    def failed(self, at: datetime, error: str) -> DeliveryStatus:
        return self.model_copy(
            update={
                "last_failure_at": at,
                "last_error": error,
                "consecutive_failures": self.consecutive_failures + 1,
            }
        )

    def gave_up(self, n: Notification) -> DeliveryStatus:
        kept = Abandoned(
            id=n.id,
            alert_id=n.alert_id,
            action=n.action,
            attempts=n.attempts,
            created_at=n.created_at,
            last_error=n.last_error,
        )
        recent = [kept, *self.recent_abandoned][:ABANDONED_KEPT]
        return self.model_copy(update={"abandoned": self.abandoned + 1, "recent_abandoned": recent})


class PendingPublic(BaseModel):
    id: str
    alert_id: str
    action: Action
    severity: Severity
    created_at: datetime
    attempts: int
    next_attempt_at: datetime
    last_error: str | None


class NotificationsPublic(BaseModel):
    """`GET /v1/notifications`: is the webhook taking alert changes?"""

    binding: str
    failing: bool = Field(description="A pending notification has failed its last attempt.")
    pending: int
    oldest_pending_at: datetime | None
    delivered: int
    last_delivered_at: datetime | None
    last_failure_at: datetime | None
    last_error: str | None
    consecutive_failures: int
    abandoned: int
    recent_abandoned: list[Abandoned]
    pending_notifications: list[PendingPublic] = Field(description=f"The oldest {PENDING_LISTED}.")


def summarize(binding: str, status: DeliveryStatus, pending: Iterable[Notification]) -> NotificationsPublic:
    ordered = sorted(pending, key=lambda n: (n.created_at, n.id))
    # The newest failure: the status record's, or a pending notification's written just before it.
    failures = [(n.last_attempt_at, n.last_error) for n in ordered if n.last_attempt_at and n.last_error]
    if status.last_failure_at is not None:
        failures.append((status.last_failure_at, status.last_error))
    last_failure_at, last_error = max(failures, key=lambda f: f[0], default=(None, None))
    return NotificationsPublic(
        binding=binding,
        failing=any(n.last_error is not None for n in ordered),
        pending=len(ordered),
        oldest_pending_at=ordered[0].created_at if ordered else None,
        **status.model_dump(exclude={"last_failure_at", "last_error"}),
        last_failure_at=last_failure_at,
        last_error=last_error,
        pending_notifications=[
            PendingPublic(**n.model_dump(include=set(PendingPublic.model_fields)))
            for n in ordered[:PENDING_LISTED]
        ],
    )


def grouped(ids_by_shard: Mapping[int, list[str]]) -> dict[str, int]:
    """Notification id -> the outbox shard listing it."""
    return {i: shard for shard, ids in ids_by_shard.items() for i in ids}
