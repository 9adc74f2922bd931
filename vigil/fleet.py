"""Fleets of machines made from the real C-MAPSS trajectories (FD001, FD002), and their readings (no I/O).

A fleet advances in ticks: at tick t every machine that is running emits the reading of its next
cycle, so all machines advance together the way a live fleet reports. `replay` maps each real unit to
one machine; `simulate` makes N machines, each a randomly chosen real unit started a random number
of ticks late and with per-sensor gaussian noise, all determined by one seed.

Readings are plain JSON-ready dicts shaped like `apps.common.contracts.Reading` (a tool streaming
thousands of readings per second should not pay for a pydantic round trip per reading; unit tests
check every one validates against the contract). `seq` is the C-MAPSS cycle number: increasing per
machine, so the actor's dedupe turns a re-run into duplicates rather than double counting.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np

from apps.common import cmapss
from apps.common.contracts import EQUIPMENT_ID_PATTERN, EQUIPMENT_ID_RULE
from apps.common.profiles import TURBOFAN, EquipmentProfile

# Value columns of a trajectory row (after unit and cycle), in the order `cmapss.row_values` uses.
VALUE_COLUMNS: Final[tuple[str, ...]] = cmapss.COLUMNS[2:]
_UNITS_ITEM = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")

Reading = dict[str, Any]  # JSON-ready, shaped like apps.common.contracts.Reading


class FleetError(ValueError):
    """A fleet cannot be built from what the user asked for; the message says what to change."""


@dataclass(frozen=True, slots=True)
class Machine:
    """One streamed machine: an equipment id, the real unit it comes from and its trajectory.

    `trajectory` is [cycles, 26] in `cmapss.COLUMNS` order (noise already applied for simulated
    machines); the machine emits row k at tick `start_tick + k`.
    """

    equipment_id: str
    unit: int
    trajectory: np.ndarray
    start_tick: int = 0

    @property
    def cycles(self) -> int:
        return int(self.trajectory.shape[0])

    @property
    def end_tick(self) -> int:
        """First tick after the machine's last reading."""
        return self.start_tick + self.cycles

    def reading_at(self, tick: int, timestamp: str, profile: str) -> Reading | None:
        k = tick - self.start_tick
        if not 0 <= k < self.cycles:
            return None
        row = self.trajectory[k]
        return {
            "equipment_id": self.equipment_id,
            "profile": profile,
            "timestamp": timestamp,
            "seq": int(row[1]),
            "values": dict(zip(VALUE_COLUMNS, row[2:].tolist(), strict=True)),
        }


@dataclass(frozen=True, slots=True)
class Fleet:
    machines: tuple[Machine, ...]
    profile: str = TURBOFAN.name

    def __post_init__(self) -> None:
        if not self.machines:
            raise FleetError("the fleet has no machines")
        ids = [m.equipment_id for m in self.machines]
        if len(set(ids)) != len(ids):
            raise FleetError("equipment ids must be unique within a fleet")

    @property
    def n_ticks(self) -> int:
        return max(m.end_tick for m in self.machines)

    @property
    def total_readings(self) -> int:
        return sum(m.cycles for m in self.machines)

    def tick(self, t: int, now: datetime) -> list[Reading]:
        """Readings of tick t, machines in fleet order, stamped `now` (a live fleet reports now)."""
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        stamp = now.isoformat()
        out: list[Reading] = []
        for machine in self.machines:
            reading = machine.reading_at(t, stamp, self.profile)
            if reading is not None:
                out.append(reading)
        return out

    def readings_per_tick(self) -> list[int]:
        """How many readings each tick holds (for progress accounting before anything is built)."""
        counts = np.zeros(self.n_ticks, dtype=np.int64)
        for m in self.machines:
            counts[m.start_tick : m.end_tick] += 1
        return counts.tolist()


def parse_units(spec: str, available: Iterable[int]) -> list[int]:
    """`"1-5,7,10-12"` -> [1, 2, 3, 4, 5, 7, 10, 11, 12]; `"all"` -> every available unit.

    Raises FleetError naming the bad item, or the units the data set does not have.
    """
    known = sorted(set(available))
    if spec.strip().lower() == "all":
        return known
    chosen: set[int] = set()
    for item in spec.split(","):
        match = _UNITS_ITEM.match(item)
        if match is None:
            raise FleetError(
                f"bad --units item {item.strip()!r} in {spec!r}: expected unit numbers and ranges, "
                "e.g. 1-5,7,10-12 (or 'all')"
            )
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) else lo
        if hi < lo:
            raise FleetError(f"bad --units range {item.strip()!r}: the end is before the start")
        chosen.update(range(lo, hi + 1))
    missing = sorted(chosen - set(known))
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise FleetError(
            f"unit(s) {shown} not in the data set (it has units {known[0]}-{known[-1]})"
            if known
            else "the data set has no units"
        )
    return sorted(chosen)


def check_prefix(prefix: str, widest_suffix: str) -> None:
    """The equipment ids the prefix produces must pass ingestion's id rule, or every reading is rejected."""
    sample = f"{prefix}{widest_suffix}"
    if not re.match(EQUIPMENT_ID_PATTERN, sample):
        raise FleetError(
            f"--prefix {prefix!r} gives equipment ids like {sample!r}, which ingestion rejects: "
            f"use {EQUIPMENT_ID_RULE}"
        )


def load_units(data_set: str, subset: str = "FD001") -> dict[int, np.ndarray]:
    """A C-MAPSS subset's `train` (run to failure) or `test` (truncated) trajectories."""
    if data_set == "train":
        return cmapss.load_train(subset)
    if data_set == "test":
        return cmapss.load_test(subset)
    raise FleetError(f"unknown data set {data_set!r}: use 'train' or 'test'")


def replay_fleet(
    trajectories: Mapping[int, np.ndarray],
    units: Sequence[int],
    prefix: str,
    profile: str = TURBOFAN.name,
    max_cycles: int | None = None,
) -> Fleet:
    """One machine per real unit, all starting at tick 0: `{prefix}{unit:03d}`; `max_cycles` keeps
    only each unit's first cycles (a short run that still ends mid-life, e.g. for a smoke test)."""
    check_prefix(prefix, f"{max(units, default=0):03d}")
    if max_cycles is not None and max_cycles < 1:
        raise FleetError("--cycles must be at least 1")
    return Fleet(tuple(Machine(f"{prefix}{u:03d}", u, trajectories[u][:max_cycles]) for u in units), profile)


def channel_spread(trajectories: Mapping[int, np.ndarray]) -> np.ndarray:
    """Standard deviation of each value column over every row of every unit (0 for constant ones)."""
    rows = np.vstack([t[:, 2:] for t in trajectories.values()])
    return rows.std(axis=0)


def channel_decimals(trajectories: Mapping[int, np.ndarray], max_decimals: int = 6) -> np.ndarray:
    """Per value column, the fewest decimals that write every value of the data set exactly (its
    sensor's resolution), at most `max_decimals`."""
    rows = np.vstack([t[:, 2:] for t in trajectories.values()])
    out = np.full(rows.shape[1], max_decimals)
    for d in range(max_decimals, -1, -1):
        exact = np.all(np.round(rows, d) == rows, axis=0)
        out[exact] = d
    return out


def simulated_fleet(
    trajectories: Mapping[int, np.ndarray],
    machines: int,
    *,
    seed: int = 0,
    noise: float = 0.1,
    max_shift: int = 50,
    prefix: str = "sim-",
    profile: EquipmentProfile = TURBOFAN,
) -> Fleet:
    """`machines` machines, each a random real unit, started 0..max_shift ticks late, plus noise.

    Noise is gaussian with sigma = `noise` x the channel's spread over the whole data set, so a sensor
    that barely moves gets barely any noise and a constant one gets none; values are clipped to the
    profile's plausible ranges because ingestion rejects anything outside them. Each machine draws
    from its own child of one SeedSequence, so machine i is the same whatever N is, for a given seed.
    Values are rounded to a resolution as a sensor reports them: the data set's own, or finer where
    the noise needs it (a step of at most a tenth of the noise's sigma), not the 17 significant
    digits of a random draw.
    """
    if machines < 1:
        raise FleetError("--machines must be at least 1")
    if noise < 0 or not np.isfinite(noise):
        raise FleetError("--noise must be a finite number >= 0")
    if max_shift < 0:
        raise FleetError("--max-shift must be >= 0")
    units = sorted(trajectories)
    if not units:
        raise FleetError("the data set has no units")
    check_prefix(prefix, f"{machines - 1:05d}")
    sigma = noise * channel_spread(trajectories)
    with np.errstate(divide="ignore"):
        finer = np.ceil(-np.log10(np.where(sigma > 0, sigma / 10, 1.0))).astype(int)
    # A sigma too small for 6 decimals is a constant channel's float round-off: left unrounded.
    decimals = [
        None if f > 6 else max(int(d), int(f), 0)
        for d, f in zip(channel_decimals(trajectories), finer, strict=True)
    ]
    bounds = [profile.channels.get(c, (-np.inf, np.inf)) for c in VALUE_COLUMNS]
    lo = np.array([b[0] for b in bounds])
    hi = np.array([b[1] for b in bounds])
    out: list[Machine] = []
    for i, child in enumerate(np.random.SeedSequence(seed).spawn(machines)):
        rng = np.random.default_rng(child)
        unit = units[int(rng.integers(len(units)))]
        shift = int(rng.integers(max_shift + 1))
        traj = trajectories[unit].copy()
        noisy = traj[:, 2:] + rng.normal(size=traj[:, 2:].shape) * sigma
        for column, d in enumerate(decimals):
            if d is not None:
                noisy[:, column] = np.round(noisy[:, column], d)
        traj[:, 2:] = np.clip(noisy, lo, hi)
        out.append(Machine(f"{prefix}{i:05d}", unit, traj, shift))
    return Fleet(tuple(out), profile.name)


def batches(readings: Iterable[Reading], size: int) -> Iterator[list[Reading]]:
    """Consecutive chunks of at most `size` readings, order kept."""
    if size < 1:
        raise FleetError("batch size must be at least 1")
    chunk: list[Reading] = []
    for reading in readings:
        chunk.append(reading)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
