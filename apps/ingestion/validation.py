"""Validation of incoming reading batches, one reading at a time (transport-free).

Flow: HTTP body or pub/sub message -> `validate_batch` -> good readings grouped per machine by
`group_by_equipment` -> one EquipmentActor call per machine; bad readings come back as
`ReadingRejection`s naming the position and the reason. One bad reading never sinks its batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from pydantic import ValidationError

from apps.common.contracts import EQUIPMENT_ID_RULE, MAX_BATCH_READINGS, Reading, ReadingRejection
from apps.common.profiles import EquipmentProfile

MAX_FUTURE_SKEW: Final = timedelta(minutes=5)


class InvalidBatch(ValueError):
    """The envelope itself is unusable (not a list of readings, or too many): nothing can be validated."""


def _readings_of(raw: Any) -> list[Any]:
    items = raw.get("readings") if isinstance(raw, Mapping) else raw
    if isinstance(raw, Mapping) and set(raw) - {"readings"}:
        raise InvalidBatch(f"unexpected batch fields: {sorted(set(raw) - {'readings'})}")
    if not isinstance(items, list):
        raise InvalidBatch("batch must be a JSON object with a 'readings' list (or a bare list of readings)")
    if not items:
        raise InvalidBatch("batch has no readings")
    if len(items) > MAX_BATCH_READINGS:
        raise InvalidBatch(f"batch has {len(items)} readings; the limit is {MAX_BATCH_READINGS}")
    return items


def _describe(error: Mapping[str, Any]) -> str:
    """A pydantic error rewritten into one of the documented rejection reasons."""
    loc = tuple(error.get("loc", ()))
    field = loc[0] if loc else ""
    msg = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    if error.get("type") == "missing":
        return f"missing field {field!r}"
    if error.get("type") == "extra_forbidden":
        return f"unexpected field {field!r}"
    if field == "equipment_id":
        return f"bad equipment_id: {msg} ({EQUIPMENT_ID_RULE})"
    if field == "timestamp":
        if "timezone-aware" in msg:
            return f"naive timestamp: {msg}"
        return f"bad timestamp: {msg}"
    if field == "seq":
        return f"bad seq: {msg} (a non-negative integer)"
    if field == "values":
        if "not finite" in msg:
            return f"non-finite value: {msg}"
        where = f" for sensor {loc[1]!r}" if len(loc) > 1 else ""
        return f"bad values{where}: {msg}"
    return f"{'.'.join(str(p) for p in loc) or 'reading'}: {msg}"


def _profile_problems(reading: Reading, profile: EquipmentProfile, now: datetime) -> list[str]:
    problems: list[str] = []
    unknown = sorted(set(reading.values) - set(profile.channels))
    if unknown:
        problems.append(f"unknown sensor(s) for profile {profile.name!r}: {', '.join(unknown)}")
    missing = [s for s in profile.required_channels if s not in reading.values]
    if missing:
        problems.append(f"missing sensor(s) required by profile {profile.name!r}: {', '.join(missing)}")
    for sensor, value in reading.values.items():
        bounds = profile.channels.get(sensor)
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            problems.append(
                f"sensor {sensor!r} value {value!r} outside the plausible range "
                f"[{bounds[0]:g}, {bounds[1]:g}] of profile {profile.name!r}"
            )
    if reading.timestamp - now > MAX_FUTURE_SKEW:
        ahead = (reading.timestamp - now).total_seconds()
        problems.append(
            f"timestamp {reading.timestamp.isoformat()} is {ahead:.0f} s in the future "
            f"(more than {MAX_FUTURE_SKEW.total_seconds():.0f} s ahead of server time)"
        )
    return problems


def validate_reading(
    item: Any, profiles: Mapping[str, EquipmentProfile], now: datetime
) -> tuple[Reading | None, list[str]]:
    """(the reading, []) if it is good, else (None, reasons)."""
    if not isinstance(item, Mapping):
        return None, [f"reading must be a JSON object, got {type(item).__name__}"]
    try:
        reading = Reading.model_validate(item)
    except ValidationError as exc:
        return None, [_describe(e) for e in exc.errors(include_url=False)]
    profile = profiles.get(reading.profile)
    if profile is None:
        return None, [f"unknown equipment profile {reading.profile!r}; known: {', '.join(sorted(profiles))}"]
    problems = _profile_problems(reading, profile, now)
    return (None, problems) if problems else (reading, [])


def validate_batch(
    raw: Any, profiles: Mapping[str, EquipmentProfile], now: datetime
) -> tuple[list[Reading], list[ReadingRejection]]:
    """Validate every reading on its own: good ones pass even when their neighbours are bad.

    `raw` is the decoded JSON body: `{"readings": [...]}` or a bare list. `now` must be timezone-aware
    (the server clock, injected so tests are deterministic). Raises `InvalidBatch` only when the
    envelope is unusable.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    good: list[Reading] = []
    rejected: list[ReadingRejection] = []
    for index, item in enumerate(_readings_of(raw)):
        reading, reasons = validate_reading(item, profiles, now)
        if reading is not None:
            good.append(reading)
            continue
        eq = item.get("equipment_id") if isinstance(item, Mapping) else None
        rejected.append(
            ReadingRejection(
                index=index,
                equipment_id=eq[:64] if isinstance(eq, str) else None,
                reason="; ".join(reasons),
            )
        )
    return good, rejected


def group_by_equipment(readings: Iterable[Reading]) -> dict[str, list[Reading]]:
    """Readings per machine, machines in first-seen order, each machine's readings in seq order.

    The sort is stable, so equal seqs (a duplicate the actor will drop) keep their batch order.
    """
    groups: dict[str, list[Reading]] = {}
    for reading in readings:
        groups.setdefault(reading.equipment_id, []).append(reading)
    for items in groups.values():
        items.sort(key=lambda r: r.seq)
    return groups
