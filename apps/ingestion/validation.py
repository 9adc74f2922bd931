"""Validation of incoming reading batches, each reading on its own (transport-free).

Flow: HTTP body or pub/sub message -> `validate_batch` -> good readings grouped per machine by
`group_by_equipment` -> one EquipmentActor call per machine; bad readings come back as
`ReadingRejection`s naming the position and the reason. One bad reading never sinks its batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
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


@dataclass(frozen=True, slots=True)
class _Checks:
    """A profile's channels as `_in_profile` checks them: sets of names, and one plain dict of ranges
    (a profile's `channels` is a read-only mapping proxy)."""

    profile: EquipmentProfile
    names: frozenset[str]
    required: frozenset[str]
    ranges: dict[str, tuple[float, float]]


_CHECKS: dict[int, _Checks] = {}


def _checks(profile: EquipmentProfile) -> _Checks:
    found = _CHECKS.get(id(profile))
    if found is None or found.profile is not profile:
        found = _CHECKS[id(profile)] = _Checks(
            profile, frozenset(profile.channels), frozenset(profile.required_channels), dict(profile.channels)
        )
    return found


def _in_profile(parsed: list[tuple[int, Reading, EquipmentProfile]], now: datetime) -> set[int]:
    """Indexes of the readings with no problem with their profile (`_profile_problems` would find none):
    known channels, the required ones present, every value in its range, not too far ahead.

    Checked for the whole batch at once: readings of one profile that carry the same channels in the
    same order (a gateway's batch: all of them) are one matrix compared with the ranges, their names
    checked once. A value by value check in Python was half of validation's CPU. What does not pass
    here is looked at reading by reading, for the messages."""
    groups: dict[tuple[int, tuple[str, ...]], list[tuple[int, Reading]]] = {}
    for index, reading, profile in parsed:
        groups.setdefault((id(profile), tuple(reading.values)), []).append((index, reading))
    profiles = {id(profile): profile for _, _, profile in parsed}
    passed: set[int] = set()
    for (profile_id, names), members in groups.items():
        checks = _checks(profiles[profile_id])
        if not (checks.names.issuperset(names) and checks.required.issubset(names)):
            continue
        low = np.array([checks.ranges[n][0] for n in names])
        high = np.array([checks.ranges[n][1] for n in names])
        values = np.array([list(r.values.values()) for _, r in members], dtype=np.float64)
        inside = ((values >= low) & (values <= high)).all(axis=1)
        passed.update(
            index
            for (index, r), ok in zip(members, inside.tolist(), strict=True)
            if ok and r.timestamp - now <= MAX_FUTURE_SKEW
        )
    return passed


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


def _parse(
    item: Any, profiles: Mapping[str, EquipmentProfile]
) -> tuple[Reading, EquipmentProfile] | list[str]:
    """The reading and its profile, or the reasons it is not a reading of a known profile."""
    if not isinstance(item, Mapping):
        return [f"reading must be a JSON object, got {type(item).__name__}"]
    try:
        reading = Reading.model_validate(item)
    except ValidationError as exc:
        return [_describe(e) for e in exc.errors(include_url=False)]
    profile = profiles.get(reading.profile)
    if profile is None:
        return [f"unknown equipment profile {reading.profile!r}; known: {', '.join(sorted(profiles))}"]
    return reading, profile


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
    items = _readings_of(raw)
    parsed: list[tuple[int, Reading, EquipmentProfile]] = []
    reasons: dict[int, list[str]] = {}
    for index, item in enumerate(items):
        found = _parse(item, profiles)
        if isinstance(found, list):
            reasons[index] = found
        else:
            parsed.append((index, *found))
    passed = _in_profile(parsed, now)
    good: list[Reading] = []
    for index, reading, profile in parsed:
        problems = [] if index in passed else _profile_problems(reading, profile, now)
        if problems:
            reasons[index] = problems
        else:
            good.append(reading)
    rejected = []
    for index, why in sorted(reasons.items()):
        eq = items[index].get("equipment_id") if isinstance(items[index], Mapping) else None
        rejected.append(
            ReadingRejection(
                index=index, equipment_id=eq[:64] if isinstance(eq, str) else None, reason="; ".join(why)
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
