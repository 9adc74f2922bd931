"""The alert lifecycle, as pure rules: an alert's record and its history of changes.

Nothing here does I/O, so every rule is unit-tested without a sidecar. One alert per episode, id
`<equipment>:<kind>:<episode>` (the EquipmentActor numbers episodes):

    open --ack--> acknowledged --clear--> cleared --reopen--> open ...
      \\--------------clear------------/
    open / acknowledged --resolve (an operator)--> resolved

- Every change is an `AlertChange` in the record's history: the machine's events (`by` =
  "equipment"), operators' acknowledgements and resolves (`by` = who, with a note) and alerting's own
  supersessions. The lifecycle state is *derived* from that history, never updated in place, so
  applying a change is idempotent (a change already in the history changes nothing) and any delivery
  order converges on the same record.
- The machine's events are ordered by their `revision` (the actor numbers an episode's events), then
  by time; the newest decides whether the condition holds. A `clear` closes the alert; a `reopen` (the
  condition came back within the profile's cooldown) opens it again. Severity only rises.
- An acknowledgement stands until the machine reports something the operator has not seen: a rise
  above the severity acknowledged, or a reopen, decided after what the operator saw (a later revision).
- `resolved` is the operator's close, and final: the actor ended that episode (alerting asks it
  first), so a condition that persists opens a new alert.
- The machine resolves its open alerts itself when its life ends (a failure, maintenance or
  replacement event): a `resolve` event by "equipment", its message (the note) naming the event.
- A new episode of the same machine and kind means the previous one ended: if its `clear` has not
  arrived (yet), the previous alert is closed as superseded, so it does not linger as open.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from apps.alerting.errors import AlertClosed, AlertNotFound, MalformedEvent, describe
from apps.common.contracts import (
    EQUIPMENT_ID_PATTERN,
    Alert,
    AlertEvent,
    AlertKind,
    AlertReading,
    SensorDeviation,
    Severity,
)

LifecycleState = Literal["open", "acknowledged", "cleared", "resolved"]
LIFECYCLE_STATES: Final = get_args(LifecycleState)
CLOSED: Final = ("cleared", "resolved")
Action = Literal["open", "escalate", "clear", "reopen", "acknowledge", "resolve", "supersede"]
MACHINE: Final = "equipment"  # `by` of the machine's own events
ALERTING: Final = "alerting"  # `by` of a supersession
HISTORY_LIMIT: Final = 200  # changes kept per alert (the first, then the newest)
_SEVERITY_RANK: Final = {"warning": 1, "critical": 2}
# Two events of one revision (events without revisions) and one time: the later kind is the newer.
_EVENT_RANK: Final = {"open": 0, "escalate": 1, "clear": 2, "reopen": 3, "resolve": 4}
_KINDS: Final = get_args(AlertKind)
_ID = re.compile(r"^(?P<eq>.+):(?P<kind>[a-z_]+):(?P<episode>[1-9][0-9]{0,8})$")


class AlertChange(BaseModel):
    """One change of an alert: who did what when, and the state and severity it left the alert in."""

    model_config = ConfigDict(frozen=True)

    at: datetime = Field(description="When: the deciding reading's time for the machine's own events.")
    action: Action
    by: str = Field(description="'equipment' (the machine's events), 'alerting', or the operator.")
    state: LifecycleState
    severity: Severity
    note: str = ""
    revision: int = Field(0, description="The machine event's revision, or the newest one an operator saw.")
    reading: AlertReading | None = Field(None, description="The reading that decided a machine event.")

    @property
    def from_machine(self) -> bool:
        # "resolve" is also an operator's action; the machine's (its life ended) is by MACHINE.
        return self.action in _EVENT_RANK and self.by == MACHINE

    def same_as(self, other: AlertChange) -> bool:
        """The same change delivered again (states differ when it arrives at a different point)."""
        return (self.action, self.at, self.by, self.revision, self.note) == (
            other.action,
            other.at,
            other.by,
            other.revision,
            other.note,
        )


class AlertRecord(BaseModel):
    """An alert as alerting keeps and serves it: the newest event's content, its lifecycle, its history."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    id: str
    equipment_id: str
    kind: AlertKind
    episode: int
    severity: Severity
    state: LifecycleState
    last_event: AlertEvent
    revision: int = Field(0, description="Revision of the newest machine event applied.")
    reading: AlertReading | None = Field(None, description="The reading that raised the alert.")
    predicted_rul: float | None = None
    model_version: int | None = None
    top_sensors: list[SensorDeviation] = Field(default_factory=list)
    message: str = ""
    raised_at: datetime
    event_at: datetime = Field(description="Time of the newest machine event applied.")
    updated_at: datetime = Field(description="Time of the newest change of any kind.")
    escalated_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    cleared_at: datetime | None = None
    cleared_reason: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    history: list[AlertChange] = Field(default_factory=list)


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


# ------------------------------------------------------------------------------------------- ids
def parse_alert(data: Any) -> Alert:
    """The `Alert` in a message's data, or MalformedEvent naming what is wrong."""
    try:
        alert = Alert.model_validate(data)
    except ValidationError as exc:
        raise MalformedEvent(f"not an Alert: {describe(exc)}") from exc
    expected = Alert.make_id(alert.equipment_id, alert.kind, alert.episode)
    if alert.id != expected:
        # The id is what makes redelivery idempotent; one that disagrees with its own fields would
        # split or merge episodes, so it is refused rather than trusted.
        raise MalformedEvent(f"alert id {alert.id!r} does not match its fields (expected {expected!r})")
    return alert


def equipment_of(alert_id: str) -> str:
    """The machine of an alert id, or AlertNotFound for anything that cannot be one: an operator's
    typo is a 404 whatever its shape, never a 422 or a store error."""
    match = _ID.fullmatch(alert_id)
    if match is None or match["kind"] not in _KINDS or not re.fullmatch(EQUIPMENT_ID_PATTERN, match["eq"]):
        raise AlertNotFound(f"no alert with id {alert_id!r}")
    return match["eq"]


# ------------------------------------------------------------------------------------ the rules
def apply_event(record: AlertRecord | None, alert: Alert) -> AlertRecord:
    """The record after the machine's event `alert`; `record` itself when it adds nothing."""
    change = AlertChange(
        at=alert.updated_at,
        action=alert.event,
        by=MACHINE,
        state="open",  # set by _derive, like every change's resulting state
        severity=alert.severity,
        revision=alert.revision,
        reading=alert.reading,
        # The machine's resolve says why (the failure, maintenance or replacement event) in its message.
        note=alert.message if alert.event == "resolve" else "",
    )
    if record is None:
        record = AlertRecord(
            id=alert.id,
            equipment_id=alert.equipment_id,
            kind=alert.kind,
            episode=alert.episode,
            severity=alert.severity,
            state="open",
            last_event=alert.event,
            revision=alert.revision,
            predicted_rul=alert.predicted_rul,
            model_version=alert.model_version,
            top_sensors=list(alert.top_sensors),
            message=alert.message,
            raised_at=alert.raised_at,
            event_at=alert.updated_at,
            updated_at=alert.updated_at,
        )
    elif any(change.same_as(c) for c in record.history):
        return record
    changes: dict[str, Any] = {}
    if _event_order(alert.revision, alert.updated_at, alert.event) >= _event_order(
        record.revision, record.event_at, record.last_event
    ):  # the newest event: its content describes the alert best
        changes.update(
            last_event=alert.event,
            revision=alert.revision,
            predicted_rul=alert.predicted_rul,
            model_version=alert.model_version,
            top_sensors=list(alert.top_sensors),
            message=alert.message,
            event_at=alert.updated_at,
        )
    if alert.raised_at < record.raised_at:
        changes["raised_at"] = alert.raised_at
    if _SEVERITY_RANK[alert.severity] > _SEVERITY_RANK[record.severity]:
        changes["severity"] = alert.severity
    if alert.event == "escalate" and (record.escalated_at is None or alert.updated_at < record.escalated_at):
        changes["escalated_at"] = alert.updated_at
    return _with_change(record.model_copy(update=changes), change)


def acknowledge(record: AlertRecord, at: datetime, by: str, note: str = "") -> AlertRecord:
    """An operator acknowledged the alert. Again on an acknowledged one: a note is added to the
    history, and the same request twice (a client's retry) changes nothing."""
    _refuse_closed(record)
    if record.state == "acknowledged":
        last = [c for c in record.history if c.action == "acknowledge"][-1]
        if not note or (last.by, last.note) == (by, note):
            return record
    return _operator(record, "acknowledge", at, by, note)


def resolve(record: AlertRecord, at: datetime, by: str, note: str = "") -> AlertRecord:
    """An operator closed an alert the machine has not cleared (after the actor ended its episode)."""
    _refuse_closed(record)
    return _operator(record, "resolve", at, by, note)


def supersede(record: AlertRecord, episode: int, at: datetime) -> AlertRecord:
    """Close an older episode that episode `episode` (raised `at`) of the same machine and kind replaced."""
    if record.state in CLOSED:
        return record
    change = AlertChange(
        at=at,
        action="supersede",
        by=ALERTING,
        state="cleared",
        severity=record.severity,
        note=f"superseded by episode {episode}",
        revision=record.revision,
    )
    return _with_change(record, change)


def closed_reason(record: AlertRecord) -> str:
    """Why an alert can take no more operator action (409's detail)."""
    if record.state == "resolved":
        note = next((c.note for c in reversed(record.history) if c.action == "resolve"), "")
        said = f": {note}" if note else ""
        return f"alert {record.id} was resolved by {record.resolved_by} at {_utc(record.resolved_at)}{said}"
    why = "the machine's condition ended" if record.cleared_reason == "cleared" else record.cleared_reason
    return f"alert {record.id} is already cleared: {why} at {_utc(record.cleared_at)}"


def new_changes(before: AlertRecord | None, after: AlertRecord) -> list[AlertChange]:
    """The changes `after` has that `before` had not: what to log and to notify."""
    seen = [] if before is None else before.history
    return [c for c in after.history if not any(c.same_as(s) for s in seen)]


def superseded_ids(index: AlertIndex, alert: Alert) -> list[str]:
    """Ids of still open earlier episodes of `alert`'s machine and kind."""
    return [
        alert_id
        for alert_id, s in index.items()
        if s.equipment_id == alert.equipment_id
        and s.kind == alert.kind
        and s.episode < alert.episode
        and s.state not in CLOSED
    ]


def next_episode(index: AlertIndex, alert: Alert) -> AlertSummary | None:
    """The episode after `alert`'s, if alerting already knows it (then `alert` is a late delivery)."""
    later = [
        s
        for s in index.values()
        if s.equipment_id == alert.equipment_id and s.kind == alert.kind and s.episode > alert.episode
    ]
    return min(later, key=lambda s: s.episode) if later else None


def open_ids(index: AlertIndex, equipment_id: str) -> list[str]:
    """The machine's alerts that are open or acknowledged."""
    return [i for i, s in index.items() if s.equipment_id == equipment_id and s.state not in CLOSED]


def newest_first(index: AlertIndex, flt: AlertFilter, limit: int | None = None) -> list[str]:
    ids = [alert_id for alert_id, s in index.items() if flt.matches(s)]
    # raised_at, then updated_at, then id: a total order, so paging and tests are deterministic.
    ids.sort(key=lambda i: (index[i].raised_at, index[i].updated_at, i), reverse=True)
    return ids if limit is None else ids[:limit]


def prune(index: AlertIndex, max_alerts: int) -> list[str]:
    """Ids to forget so the index holds at most `max_alerts`: the oldest closed ones only."""
    excess = len(index) - max_alerts
    if excess <= 0:
        return []
    closed = sorted((s.updated_at, i) for i, s in index.items() if s.state in CLOSED)
    return [i for _, i in closed[:excess]]


# ---------------------------------------------------------------------------------------- helpers
def _event_order(revision: int, at: datetime, event: str) -> tuple[int, datetime, int]:
    return revision, at, _EVENT_RANK[event]


def _utc(at: datetime | None) -> str:
    return "?" if at is None else f"{at:%Y-%m-%d %H:%M:%S} UTC"


def _refuse_closed(record: AlertRecord) -> None:
    if record.state in CLOSED:
        raise AlertClosed(closed_reason(record))


def _operator(record: AlertRecord, action: Action, at: datetime, by: str, note: str) -> AlertRecord:
    change = AlertChange(
        at=at,
        action=action,
        by=by,
        state="open",
        severity=record.severity,
        note=note,
        revision=record.revision,
    )
    return _with_change(record, change)


def _with_change(record: AlertRecord, change: AlertChange) -> AlertRecord:
    """`record` with `change` in its history and its lifecycle derived again."""
    history = sorted([*record.history, change], key=lambda c: (c.at, c.revision))
    if len(history) > HISTORY_LIMIT:
        history = history[:1] + history[-(HISTORY_LIMIT - 1) :]
    derived = _derive(history)
    stamped = change.model_copy(update={"state": derived["state"]})
    history = [stamped if c is change else c for c in history]
    return record.model_copy(update={**derived, "history": history, "updated_at": max(c.at for c in history)})


def _derive(history: list[AlertChange]) -> dict[str, Any]:
    """The lifecycle fields that follow from a history (see the module docstring for the rules)."""
    events = [c for c in history if c.from_machine]
    newest = max(events, key=lambda c: _event_order(c.revision, c.at, c.action)) if events else None
    out: dict[str, Any] = dict.fromkeys(("cleared_at", "cleared_reason", "resolved_at", "resolved_by"))
    # The reading that raised it: the open's (the earliest event's until the open arrives).
    first = min(
        events, key=lambda c: (c.action != "open", _event_order(c.revision, c.at, c.action)), default=None
    )
    out["reading"] = None if first is None else first.reading
    superseded = next((c for c in history if c.action == "supersede"), None)
    if newest is not None and newest.action == "clear":
        out.update(state="cleared", cleared_at=newest.at, cleared_reason="cleared")
    elif superseded is not None:
        out.update(state="cleared", cleared_at=superseded.at, cleared_reason=superseded.note)
    else:
        out["state"] = "open"
    ack = _standing_ack(history, events)
    out.update(acknowledged_at=ack.at if ack else None, acknowledged_by=ack.by if ack else None)
    if out["state"] == "open" and ack is not None:
        out["state"] = "acknowledged"
    resolved = next((c for c in history if c.action == "resolve"), None)
    if resolved is not None:
        out.update(state="resolved", resolved_at=resolved.at, resolved_by=resolved.by)
    return out


def _standing_ack(history: Iterable[AlertChange], events: list[AlertChange]) -> AlertChange | None:
    """The acknowledgement in effect: the first one not overtaken by something the operator had not
    seen (later acknowledgements only add notes), or None."""

    def overtaken(ack: AlertChange) -> bool:
        return any(
            (e.revision, e.at) > (ack.revision, ack.at)
            and (e.action == "reopen" or _SEVERITY_RANK[e.severity] > _SEVERITY_RANK[ack.severity])
            for e in events
        )

    current: AlertChange | None = None
    for change in history:
        if change.action == "acknowledge" and (current is None or overtaken(current)):
            current = change
    return None if current is None or overtaken(current) else current
