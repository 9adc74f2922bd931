"""Equipment events (the labels) without HTTP: `failure`, `maintenance` and `replaced`, kept in the archive.

An event is one small file per (machine, seq, kind) written through the `archive` binding at once (it
is rare and must survive anything once acknowledged), so recording it twice changes nothing. How
events cut a machine's readings into lives and labels: apps/training/history.py. Then the machine's
actor starts its new life (window, age, alarms; its old alerts resolved): the request is answered
only once it has, and a failure of either step is a 503 to retry (both are idempotent).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import ValidationError

from apps.common.contracts import (
    EQUIPMENT_ID_PATTERN,
    EQUIPMENT_ID_RULE,
    EquipmentEvent,
    EquipmentEventRequest,
)
from apps.ingestion.service import parse_json


class MachineState(Protocol):
    async def last_seq(self, equipment_id: str) -> int | None:
        """The last seq the machine's actor applied; None when it has had no reading."""

    async def start_life(self, event: EquipmentEvent) -> None:
        """Have the machine's actor start the life that follows `event` (nothing if it already has)."""


class EventArchive(Protocol):
    async def write_event(self, event: EquipmentEvent) -> str: ...

    async def events(self, equipment_id: str | None = None) -> list[EquipmentEvent]: ...


class BadEvent(ValueError):
    """The request is wrong (4xx): the message names the field."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def _describe(error: dict[str, Any]) -> str:
    field = ".".join(str(p) for p in error.get("loc", ())) or "body"
    msg = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "extra_forbidden":
        return f"unexpected field {field!r}"
    if error.get("type") == "missing":
        return f"missing field {field!r}"
    return f"{field}: {msg}"


def parse_event_request(equipment_id: str, body: bytes) -> EquipmentEventRequest:
    """The body as an EquipmentEventRequest; BadEvent (400 not JSON, 422 otherwise) naming the field."""
    if not re.match(EQUIPMENT_ID_PATTERN, equipment_id):
        raise BadEvent(f"equipment_id {equipment_id!r}: {EQUIPMENT_ID_RULE}")
    try:
        raw = parse_json(body)
    except ValueError as exc:  # not JSON, or not text at all
        raise BadEvent(str(exc), 400) from exc
    if not isinstance(raw, dict):
        raise BadEvent(f"the body must be a JSON object, got {type(raw).__name__}")
    try:
        return EquipmentEventRequest.model_validate(raw)
    except ValidationError as exc:
        raise BadEvent("; ".join(_describe(e) for e in exc.errors(include_url=False))) from None


# How far ahead of the platform's clock an event's time may be: clocks disagree a little, but a failure
# dated next year is a typo or a forgery, and a label training would trust.
MAX_EVENT_FUTURE = timedelta(minutes=5)
# How far an event's seq may lie past the machine's last applied reading (readings still in flight):
# further is a typo, and it would make every later reading up to it the old life's (refused by the actor)
# and cut training's lives there. The same bound as the actor's for a reading's seq jump.
MAX_EVENT_SEQ_AHEAD = 1_000_000


class EventService:
    def __init__(
        self,
        machines: MachineState,
        archive: EventArchive,
        max_future: timedelta = MAX_EVENT_FUTURE,
        max_seq_ahead: int = MAX_EVENT_SEQ_AHEAD,
    ) -> None:
        self.machines = machines
        self.archive = archive
        self.max_future = max_future
        self.max_seq_ahead = max_seq_ahead

    async def record(
        self, equipment_id: str, request: EquipmentEventRequest, now: datetime
    ) -> EquipmentEvent:
        """Keep the event; without a seq it happened after the last reading the platform applied."""
        if request.timestamp is not None and request.timestamp > now + self.max_future:
            raise BadEvent(
                f"timestamp: {request.timestamp.isoformat()} is in the future (more than "
                f"{self.max_future.total_seconds():g} s ahead of the platform's clock, {now.isoformat()})"
            )
        seq = request.seq
        if seq is not None:
            last = await self.machines.last_seq(equipment_id)
            if last is not None and seq > last + self.max_seq_ahead:
                raise BadEvent(
                    f"seq: {seq} is more than {self.max_seq_ahead} past the last reading of "
                    f"{equipment_id!r} ({last}); the event follows a reading the machine sent"
                )
        else:
            seq = await self.machines.last_seq(equipment_id)
            if seq is None:
                raise BadEvent(
                    f"seq: equipment {equipment_id!r} has sent no reading yet, so the event needs the seq "
                    "of the last reading before it",
                    409,
                )
        event = EquipmentEvent(
            equipment_id=equipment_id,
            kind=request.kind,
            seq=seq,
            timestamp=request.timestamp or now,
            note=request.note,
            source="api",
            recorded_at=now,
        )
        await self.archive.write_event(event)
        # After the archive: training cuts lives from what the archive keeps, and a retry after a
        # failed actor call finds the event kept and only repeats what is idempotent.
        await self.machines.start_life(event)
        return event

    async def list(self, equipment_id: str) -> list[EquipmentEvent]:
        return await self.archive.events(equipment_id)
