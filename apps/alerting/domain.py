"""Transport-free rules of the alerting service besides the alert lifecycle (lifecycle.py): fleet
health, dead letters and the CloudEvent envelope.

Nothing here does I/O, so every rule (fleet counts, newest snapshot, retention) is unit-tested
without a sidecar.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, TypeVar, get_args

from pydantic import BaseModel, Field, ValidationError

from apps.alerting.errors import MalformedEvent, describe
from apps.common.contracts import HealthSnapshot, Status, snapshot_is_newer

STATUSES: Final[tuple[str, ...]] = get_args(Status)
M = TypeVar("M", bound=BaseModel)


# -------------------------------------------------------------------------------------------- fleet
class FleetPublic(BaseModel):
    total: int
    counts: dict[str, int] = Field(description="Machines per status (every status present, maybe 0).")
    machines: list[HealthSnapshot]


def parse_snapshot(data: Any) -> HealthSnapshot:
    try:
        return HealthSnapshot.model_validate(data)
    except ValidationError as exc:
        raise MalformedEvent(f"not a HealthSnapshot: {describe(exc)}") from exc


# Keep only the latest snapshot per machine, by the actor's own order (see snapshot_is_newer).
is_newer = snapshot_is_newer


def clamp_future(item: M, now: datetime, max_skew: timedelta) -> tuple[M, list[str]]:
    """`item` with every time further than `max_skew` past `now` set to `now`, and the clamped fields.

    A sender's clock is not trusted: a time in the future would sort after everything that really
    comes later (history, listings, pruning, a retirement). `now` is when the receiver got it.
    """
    limit = now + max_skew
    changes: dict[str, Any] = {}
    clamped: list[str] = []
    for name in type(item).model_fields:
        value = getattr(item, name)
        if isinstance(value, datetime) and value > limit:
            changes[name] = now
            clamped.append(name)
        elif isinstance(value, BaseModel):
            inner, fields = clamp_future(value, now, max_skew)
            if fields:
                changes[name] = inner
                clamped += [f"{name}.{f}" for f in fields]
    if not changes:
        return item, clamped
    # Validated again, so a rule across fields (raised before updated) still holds.
    return type(item).model_validate({**item.model_dump(), **changes}), clamped


def summarize_fleet(snapshots: Iterable[HealthSnapshot], status: str | None = None) -> FleetPublic:
    machines = sorted(snapshots, key=lambda s: s.equipment_id)
    counts = dict.fromkeys(STATUSES, 0)
    for s in machines:
        counts[s.status] = counts.get(s.status, 0) + 1
    shown = machines if status is None else [s for s in machines if s.status == status]
    return FleetPublic(total=len(machines), counts=counts, machines=shown)


class RetiredMachine(BaseModel):
    """A machine an operator retired: out of the fleet view, its open alerts resolved, its actor no
    longer watching it. Kept so that a snapshot the actor published before the retire, delivered
    after it, does not bring the machine back; a newer one (it sends readings again) does."""

    equipment_id: str
    retired_at: datetime = Field(description="When the machine's actor retired it (its clock).")
    by: str
    note: str = ""
    resolved_alerts: list[str] = Field(default_factory=list)


def revives(retired: RetiredMachine | None, snapshot: HealthSnapshot) -> bool:
    """Whether `snapshot` puts a (possibly retired) machine in the fleet view."""
    return retired is None or snapshot.updated_at > retired.retired_at


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
    return envelope_of(event)


def envelope_of(event: Any) -> Envelope:
    """`decode_envelope` of a CloudEvent already parsed (an entry of a bulk delivery)."""
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
