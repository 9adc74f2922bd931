"""Labelled runs of the archive as the trainer's input (pure): lives that ended in a failure -> trajectories.

The trainer and the promotion gate take run-to-failure trajectories in the C-MAPSS layout (one array of
`apps.common.cmapss.COLUMNS` per run: unit, cycle, settings, sensors), so a run of the fleet's own
history is turned into exactly that: column `cycle` counts readings since the life began (as the actor
counts the readings it applied), channels the profile does not list stay NaN. A run is named by its
key `<machine>#<life number>`, which stays the same whatever else is added to the archive, so a job can
tell which runs are new since the champion was trained.

A run whose failure lies beyond its last reading (an imported test unit with its true RUL) is skipped
with the reason: the trainer and the gate both need the whole run to the failure (the gate cuts runs
itself, at fixed random points).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import numpy as np

from apps.common.cmapss import COLUMNS
from apps.common.features import EARLY_READINGS, reading_columns
from apps.common.profiles import EquipmentProfile
from apps.training.history import Life

HELD_OUT_EVERY: Final = 5  # one run in five is the gate's held-out machine, never fitted on
_TRAILING_NUMBER: Final = re.compile(r"(\d+)$")


@dataclass(frozen=True, slots=True)
class LabelledRuns:
    """The runs to failure of one profile: fitted on, or held out for the promotion gate."""

    fit: dict[int, np.ndarray]  # trainer input: index -> C-MAPSS-layout trajectory
    held_out: dict[int, np.ndarray]
    keys: dict[int, str]  # index -> run key, for both dicts
    skipped: list[str]  # runs that cannot be used, with the reason

    @property
    def all_keys(self) -> set[str]:
        return set(self.keys.values())


def run_key(equipment_id: str, life: int) -> str:
    return f"{equipment_id}#{life}"


def is_held_out(equipment_id: str, life: int) -> bool:
    """Fixed per run, whatever else arrives: by the machine id's trailing number when it has one (so
    FD001 unit 5, 10, ... are held out whether trained from the files or imported as fd001-005, ...),
    else by a hash of the id; a later life of the same machine moves one step along."""
    found = _TRAILING_NUMBER.search(equipment_id)
    number = int(found.group(1)) if found else int(hashlib.sha256(equipment_id.encode()).hexdigest()[:8], 16)
    return (number + life) % HELD_OUT_EVERY == 0


def trajectory(life: Life, profile: EquipmentProfile, unit: int) -> np.ndarray:
    """One life as a [readings, 26] C-MAPSS-layout array; cycle = 1, 2, ... since the life began."""
    n = len(life.readings)
    out = np.full((n, len(COLUMNS)), np.nan)
    out[:, 0] = unit
    out[:, 1] = np.arange(1, n + 1, dtype=np.float64)
    channels = [c for c in COLUMNS[2:] if c in profile.channels]
    values = life.readings.matrix(channels)
    for j, name in enumerate(channels):
        out[:, COLUMNS.index(name)] = values[:, j]
    return out


def labelled_runs(lives: Iterable[Life], profile: EquipmentProfile) -> LabelledRuns:
    """The profile's runs to failure, split into fit and held-out runs by `is_held_out`."""
    fit: dict[int, np.ndarray] = {}
    held: dict[int, np.ndarray] = {}
    keys: dict[int, str] = {}
    skipped: list[str] = []
    needed = [*profile.informative_sensors, *profile.operating_settings]
    unit = 0
    for life in lives:
        if not life.failed or life.readings.profile != profile.name or life.end_seq is None:
            continue
        key = run_key(life.equipment_id, life.number)
        missing = [c for c in needed if np.isnan(life.readings.matrix([c])).any()]
        if missing:
            skipped.append(f"{key}: readings without {', '.join(missing)}")
            continue
        if int(life.readings.seq[-1]) != life.end_seq:
            skipped.append(f"{key}: the failure is {life.end_seq - int(life.readings.seq[-1])} readings "
                           "after the last one archived (a cut run, not a whole run to failure)")  # fmt: skip
            continue
        unit += 1
        keys[unit] = key
        (held if is_held_out(life.equipment_id, life.number) else fit)[unit] = trajectory(life, profile, unit)
    return LabelledRuns(fit, held, keys, skipped)


def new_runs(current: Iterable[str], champion: Iterable[str] | None) -> list[str]:
    """Run keys not in the champion's training data (every one when the champion's are unknown)."""
    known = set(champion or ())
    return sorted(k for k in current if k not in known)


def recent_trajectories(lives: Iterable[Life], profile: EquipmentProfile, last: int) -> dict[int, np.ndarray]:
    """The last `last` readings of each running life of the profile, as trajectories (ages counted
    from the life's start): what the actors made their recent predictions from."""
    running = [life for life in lives if life.ended_by is None and life.readings.profile == profile.name]
    return {unit: trajectory(life, profile, unit)[-last:] for unit, life in enumerate(running, start=1)}


def recent_readings(
    lives: Iterable[Life], profile: EquipmentProfile, last: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(reading rows, ages, head) of the last `last` readings of each running life of the profile: rows
    in the actor's columns (apps.common.features.reading_columns), ages counted from the life's start,
    and the life's first readings as the actor keeps them (a health index's from_start needs them).
    Any profile's channels, where `recent_trajectories` holds only the C-MAPSS layout's."""
    columns = list(reading_columns(profile))
    out = []
    for life in lives:
        if life.ended_by is None and life.readings.profile == profile.name:
            n = len(life.readings)
            ages = np.arange(1, n + 1, dtype=np.float64)
            rows = life.readings.matrix(columns)
            out.append((rows[-last:], ages[-last:], rows[:EARLY_READINGS]))
    return out
