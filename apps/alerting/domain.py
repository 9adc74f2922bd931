"""Transport-free rules of the alerting service: alert lifecycle, fleet health, dead letters.

Nothing here does I/O, so every rule (dedupe, ordering, acknowledgement, supersession, fleet
counts, retention) is unit-tested without a sidecar.

Alert lifecycle, per alert id (`<equipment>:<kind>:<episode>`, one id per episode, so an
escalation warning -> critical updates the same alert, as the EquipmentActor publishes it):

    open --ack--> acknowledged --clear--> cleared
      \\________________clear______________/

- Pub/sub is at-least-once and unordered, so applying an event is idempotent and commutative
  enough that any delivery order converges on the same record: severity only rises within an
  episode (the actor never steps an episode down), descriptive fields come from the event with the
  newest `updated_at`, and `cleared` is terminal (an episode never reopens: the actor starts a new
  episode, with a new id, instead).
- An escalation after an acknowledgement re-opens the alert (the operator acknowledged a warning,
  not the critical), unless the escalation happened before the acknowledgement (a late delivery).
- A new episode of the same machine and kind implies the previous one ended: if its `clear` has not
  arrived (yet), the previous alert is cleared as superseded, so it does not linger as open.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from apps.common.contracts import (
    Alert,
    AlertEvent,
    AlertKind,
    HealthSnapshot,
    SensorDeviation,
    Severity,
    Status,
)

LifecycleState = Literal["open", "acknowledged", "cleared"]
LIFECYCLE_STATES: Final = get_args(LifecycleState)
STATUSES: Final[tuple[str, ...]] = get_args(Status)
_SEVERITY_RANK: Final = {"warning": 1, "critical": 2}


class AlertingError(Exception):
    """Base of the typed errors the HTTP adapter maps to status codes."""


class AlertNotFound(AlertingError):
    pass


class AlertAlreadyCleared(AlertingError):
    pass


class MalformedEvent(AlertingError):
    """A pub/sub message that can never be processed (bad JSON, wrong shape): drop it, do not retry."""


# ------------------------------------------------------------------------------------------- alerts
class AlertRecord(BaseModel):
    """An alert as alerting keeps and serves it: the last event's content plus its lifecycle."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    id: str
    equipment_id: str
    kind: AlertKind
    episode: int
    severity: Severity
    state: LifecycleState
    last_event: AlertEvent
    predicted_rul: float | None = None
    model_version: int | None = None
    top_sensors: list[SensorDeviation] = Field(default_factory=list)
    message: str = ""
    raised_at: datetime
    updated_at: datetime = Field(description="`updated_at` of the newest event applied.")
    escalated_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    cleared_at: datetime | None = None
    cleared_reason: str | None = None


class AlertSummary(BaseModel):
    """What the alert index keeps per alert: enough to filter and sort without reading every alert."""

    model_config = ConfigDict(frozen=True)

    equipment_id: str
    kind: AlertKind
    episode: int
    severity: Severity
    state: LifecycleState
    raised_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, record: AlertRecord) -> AlertSummary:
        return cls(
            equipment_id=record.equipment_id,
            kind=record.kind,
            episode=record.episode,
            severity=record.severity,
            state=record.state,
            raised_at=record.raised_at,
            updated_at=record.updated_at,
        )


AlertIndex = dict[str, AlertSummary]


@dataclass(frozen=True, slots=True)
class AlertFilter:
    equipment_id: str | None = None
    state: LifecycleState | None = None
    kind: AlertKind | None = None
    severity: Severity | None = None

    def matches(self, s: AlertSummary) -> bool:
        return (
            (self.equipment_id is None or s.equipment_id == self.equipment_id)
            and (self.state is None or s.state == self.state)
            and (self.kind is None or s.kind == self.kind)
            and (self.severity is None or s.severity == self.severity)
        )


def parse_alert(data: Any) -> Alert:
    """The `Alert` in a message's data, or MalformedEvent naming what is wrong."""
    try:
        alert = Alert.model_validate(data)
    except ValidationError as exc:
        raise MalformedEvent(f"not an Alert: {_errors(exc)}") from exc
    expected = Alert.make_id(alert.equipment_id, alert.kind, alert.episode)
    if alert.id != expected:
        # The id is what makes redelivery idempotent; one that disagrees with its own fields would
        # split or merge episodes, so it is refused rather than trusted.
        raise MalformedEvent(f"alert id {alert.id!r} does not match its fields (expected {expected!r})")
    return alert


def equipment_of(alert_id: str) -> str:
    """The machine an alert id (`<equipment>:<kind>:<episode>`) belongs to; equipment ids hold no ':'."""
    return alert_id.rsplit(":", 2)[0]


def new_record(alert: Alert) -> AlertRecord:
    cleared = alert.event == "clear"
    return AlertRecord(
        id=alert.id,
        equipment_id=alert.equipment_id,
        kind=alert.kind,
        episode=alert.episode,
        severity=alert.severity,
        state="cleared" if cleared else "open",
        last_event=alert.event,
        predicted_rul=alert.predicted_rul,
        model_version=alert.model_version,
        top_sensors=list(alert.top_sensors),
        message=alert.message,
        raised_at=alert.raised_at,
        updated_at=alert.updated_at,
        escalated_at=alert.updated_at if alert.event == "escalate" else None,
        cleared_at=alert.updated_at if cleared else None,
        cleared_reason="cleared" if cleared else None,
    )


# Within one episode the actor emits open, then escalate, then clear. One actor call can emit two of
# them with the same timestamp (a batch that crosses both thresholds), so the event kind and the
# severity break the tie: the later kind, and the higher severity, is the newer event.
_EVENT_RANK: dict[str, int] = {"open": 0, "escalate": 1, "clear": 2, "reopen": 3}


def _event_order(updated_at: datetime, event: str, severity: str) -> tuple[datetime, int, int]:
    return updated_at, _EVENT_RANK[event], _SEVERITY_RANK[severity]


def apply_event(record: AlertRecord | None, alert: Alert) -> AlertRecord:
    """The record after `alert`; equal to `record` when the event adds nothing (duplicate, stale)."""
    if record is None:
        return new_record(alert)
    changes: dict[str, Any] = {}
    if _event_order(alert.updated_at, alert.event, alert.severity) > _event_order(
        record.updated_at, record.last_event, record.severity
    ):  # newer: its content describes the alert best
        changes.update(
            last_event=alert.event,
            predicted_rul=alert.predicted_rul,
            model_version=alert.model_version,
            top_sensors=list(alert.top_sensors),
            message=alert.message,
            updated_at=alert.updated_at,
        )
    if alert.raised_at < record.raised_at:
        changes["raised_at"] = alert.raised_at
    rises = _SEVERITY_RANK[alert.severity] > _SEVERITY_RANK[record.severity]
    if rises:
        changes["severity"] = alert.severity
    if alert.event == "escalate" and (record.escalated_at is None or alert.updated_at < record.escalated_at):
        changes["escalated_at"] = alert.updated_at
    if alert.event == "clear":
        if record.state != "cleared":
            changes.update(state="cleared", cleared_at=alert.updated_at, cleared_reason="cleared")
        elif record.cleared_reason != "cleared":
            # Superseded first, the actor's own clear now: keep the actor's reason and time.
            changes.update(cleared_at=alert.updated_at, cleared_reason="cleared")
    elif (
        rises
        and record.state == "acknowledged"
        and record.acknowledged_at is not None
        and alert.updated_at > record.acknowledged_at
    ):
        changes["state"] = "open"  # acknowledged at a lower severity: the operator must look again
    return record.model_copy(update=changes) if changes else record


def supersede(record: AlertRecord, episode: int, at: datetime) -> AlertRecord:
    """Clear an older episode that episode `episode` (raised `at`) of the same machine and kind replaced."""
    if record.state == "cleared":
        return record
    return record.model_copy(
        update={"state": "cleared", "cleared_at": at, "cleared_reason": f"superseded by episode {episode}"}
    )


def superseded_ids(index: AlertIndex, alert: Alert) -> list[str]:
    """Ids of not-yet-cleared earlier episodes of `alert`'s machine and kind."""
    return [
        alert_id
        for alert_id, s in index.items()
        if s.equipment_id == alert.equipment_id
        and s.kind == alert.kind
        and s.episode < alert.episode
        and s.state != "cleared"
    ]


def next_episode(index: AlertIndex, alert: Alert) -> AlertSummary | None:
    """The episode after `alert`'s, if alerting already knows it (then `alert` is a late delivery)."""
    later = [
        s
        for s in index.values()
        if s.equipment_id == alert.equipment_id and s.kind == alert.kind and s.episode > alert.episode
    ]
    return min(later, key=lambda s: s.episode) if later else None


def acknowledge(record: AlertRecord, at: datetime, by: str | None) -> AlertRecord:
    """Acknowledge an open alert; acknowledging twice is harmless (the first one stands)."""
    if record.state == "cleared":
        raise AlertAlreadyCleared(f"alert {record.id} is already cleared")
    if record.state == "acknowledged":
        return record
    return record.model_copy(update={"state": "acknowledged", "acknowledged_at": at, "acknowledged_by": by})


def newest_first(index: AlertIndex, flt: AlertFilter, limit: int | None = None) -> list[str]:
    ids = [alert_id for alert_id, s in index.items() if flt.matches(s)]
    # raised_at, then updated_at, then id: a total order, so paging and tests are deterministic.
    ids.sort(key=lambda i: (index[i].raised_at, index[i].updated_at, i), reverse=True)
    return ids if limit is None else ids[:limit]


def prune(index: AlertIndex, max_alerts: int) -> list[str]:
    """Ids to forget so the index holds at most `max_alerts`: the oldest cleared ones only."""
    excess = len(index) - max_alerts
    if excess <= 0:
        return []
    cleared = sorted((s.updated_at, i) for i, s in index.items() if s.state == "cleared")
    return [i for _, i in cleared[:excess]]


# -------------------------------------------------------------------------------------------- fleet
class FleetPublic(BaseModel):
    total: int
    counts: dict[str, int] = Field(description="Machines per status (every status present, maybe 0).")
    machines: list[HealthSnapshot]


def parse_snapshot(data: Any) -> HealthSnapshot:
    try:
        return HealthSnapshot.model_validate(data)
    except ValidationError as exc:
        raise MalformedEvent(f"not a HealthSnapshot: {_errors(exc)}") from exc


def is_newer(current: HealthSnapshot | None, new: HealthSnapshot) -> bool:
    """Keep only the latest snapshot per machine, whatever order they arrive in."""
    if current is None:
        return True
    return (new.updated_at, new.readings_applied, new.duplicates) > (
        current.updated_at,
        current.readings_applied,
        current.duplicates,
    )


def summarize_fleet(snapshots: Iterable[HealthSnapshot], status: str | None = None) -> FleetPublic:
    machines = sorted(snapshots, key=lambda s: s.equipment_id)
    counts = dict.fromkeys(STATUSES, 0)
    for s in machines:
        counts[s.status] = counts.get(s.status, 0) + 1
    shown = machines if status is None else [s for s in machines if s.status == status]
    return FleetPublic(total=len(machines), counts=counts, machines=shown)


# ------------------------------------------------------------------------------------- dead letters
class DeadLetter(BaseModel):
    """A message that could not be processed, kept for an operator (newest first in the API).

    `index` and `reading` are ingestion's: the reading's position in its batch and the reading as
    received. Messages Dapr itself routed to the dead-letter topic carry the whole original payload
    in `reading` and no index.
    """

    shard: int = Field(0, ge=0, description="Which of the dead-letter logs holds it.")
    seq: int = Field(ge=0, description="Position in its shard's log (increasing); unique with `shard`.")
    topic: str
    event_id: str | None = None
    publisher: str | None = Field(None, description="The CloudEvent source (the publishing app id).")
    source: str | None = Field(None, description="Where the publisher got the item (ingestion: http/pubsub).")
    reason: str
    index: int | None = None
    equipment_id: str | None = None
    reading: Any = None
    rejected_at: datetime | None = None
    received_at: datetime

    @property
    def dedupe_key(self) -> str | None:
        """What identifies a redelivery: CloudEvent ids are unique per source (and here per topic)."""
        return None if self.event_id is None else f"{self.topic}/{self.publisher or ''}/{self.event_id}"


def dead_letter_from(
    data: Any, topic: str, event_id: str | None, publisher: str | None, received_at: datetime
) -> DeadLetter:
    """Normalise a dead-letter payload; never fails, since a dead letter must not be lost."""
    if isinstance(data, Mapping) and "reason" in data and "reading" in data:  # ingestion's own
        reading = data.get("reading")
        index = data.get("index")
        rejected_at = _parse_time(data.get("rejected_at"))
        return DeadLetter(
            seq=0,
            topic=topic,
            event_id=event_id,
            publisher=publisher,
            source=str(data.get("source")) if data.get("source") is not None else None,
            reason=str(data.get("reason")),
            index=index if isinstance(index, int) and not isinstance(index, bool) and index >= 0 else None,
            equipment_id=_equipment_of(reading),
            reading=reading,
            rejected_at=rejected_at,
            received_at=received_at,
        )
    return DeadLetter(
        seq=0,
        topic=topic,
        event_id=event_id,
        publisher=publisher,
        reason="delivery failed: routed to the dead-letter topic by Dapr",
        equipment_id=_equipment_of(data),
        reading=data,
        received_at=received_at,
    )


def malformed_letter(
    data: Any, topic: str, event_id: str | None, publisher: str | None, reason: str, received_at: datetime
) -> DeadLetter:
    return DeadLetter(
        seq=0,
        topic=topic,
        event_id=event_id,
        publisher=publisher,
        reason=f"malformed {topic} message: {reason}",
        equipment_id=_equipment_of(data),
        reading=data,
        received_at=received_at,
    )


def ring_slot(seq: int, retention: int) -> int:
    return seq % retention


def recent_seqs(next_seq: int, retention: int, limit: int) -> list[int]:
    """Sequence numbers still held by the ring buffer, newest first, at most `limit`."""
    oldest = max(0, next_seq - retention, next_seq - limit)
    return list(range(next_seq - 1, oldest - 1, -1))


def newest_letters(letters: Iterable[DeadLetter], limit: int) -> list[DeadLetter]:
    """The newest `limit` letters of several shards' logs, by the time alerting received them."""
    return sorted(letters, key=lambda d: (d.received_at, d.shard, d.seq), reverse=True)[:limit]


# ---------------------------------------------------------------------------------- event envelope
@dataclass(frozen=True, slots=True)
class Envelope:
    """The parts of a CloudEvent alerting uses."""

    data: Any
    event_id: str | None
    source: str | None
    topic: str | None


def decode_envelope(body: bytes) -> Envelope:
    """Decode a delivered CloudEvent; MalformedEvent if the body is not one.

    `data` is a JSON value when the publisher set `application/json` (what DaprPublisher does); a
    JSON text published without a content type arrives as a string and is decoded too, and so is
    `data_base64` (raw payloads), so a publisher's choice of content type does not lose a message.
    """
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedEvent(f"body is not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise MalformedEvent(f"body is a JSON {type(event).__name__}, not a CloudEvent object")
    if "data_base64" in event and "data" not in event:
        try:
            data: Any = base64.b64decode(str(event["data_base64"]), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise MalformedEvent(f"data_base64 is not base64 of UTF-8 text: {exc}") from exc
    else:
        data = event.get("data")
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            pass  # plain text stays text; the handler decides whether that is acceptable
    return Envelope(
        data=data,
        event_id=_opt_str(event.get("id")),
        source=_opt_str(event.get("source")),
        topic=_opt_str(event.get("topic")),
    )


# ---------------------------------------------------------------------------------------- helpers
def _errors(exc: ValidationError, limit: int = 5) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()[:limit]]
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _equipment_of(item: Any) -> str | None:
    if isinstance(item, Mapping) and isinstance(item.get("equipment_id"), str):
        return str(item["equipment_id"])[:128]
    return None


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
