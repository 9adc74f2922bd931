"""Training data from the fleet's own history: archived readings + events -> lives (runs.py turns the
runs to failure into the trainer's input).

Pure (no Dapr): `apps/common/archivestore.py` fetches the chunks and events through the `archive`
binding, `apps.common.archive.merge_blocks` merges them by (machine, seq), and this module cuts each
machine's readings into lives at its events and labels the ones that ended in a failure:

    readings of a machine, by seq:  1 ... 192 | 193 ... 310 | 311 ...
    events:                  failure @192     maintenance @310
    lives:                   0: run to failure (RUL = 192 - seq), 1: censored, 2: running

A failure closes a run and its labels become known; maintenance or a replacement ends a life without
a failure (censored: the RUL was more than what was left); readings after the last event are the
running life. Several events at one seq are one boundary (a failure among them makes it a failure).
An event's seq may lie beyond the last archived reading (a failure after the data stops, as a test
set's true RUL says): the life still ends there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from apps.common.archive import Block
from apps.common.contracts import EquipmentEvent, EventKind


@dataclass(frozen=True, slots=True)
class Life:
    """The readings of one machine between two events (or after the last one)."""

    equipment_id: str
    number: int  # 0 for the first life of the machine the archive knows
    readings: Block
    ended_by: EventKind | None  # None: still running
    end_seq: int | None  # the seq of the event that ended it

    @property
    def failed(self) -> bool:
        return self.ended_by == "failure"

    def rul(self) -> np.ndarray:
        """Remaining useful life at each reading: failure seq - seq (only a run to failure has one)."""
        if not self.failed or self.end_seq is None:
            raise ValueError(f"{self.equipment_id} life {self.number} did not end in a failure: no RUL")
        return (self.end_seq - self.readings.seq).astype(np.float64)


def _boundaries(events: Iterable[EquipmentEvent]) -> list[tuple[int, EventKind]]:
    by_seq: dict[int, EventKind] = {}
    for event in sorted(events, key=lambda e: (e.seq, e.kind != "failure")):
        by_seq.setdefault(event.seq, event.kind)  # a failure at a seq outranks what else happened there
    return sorted(by_seq.items())


def split_lives(readings: Block, events: Iterable[EquipmentEvent]) -> list[Life]:
    """One machine's merged readings (sorted by seq, one per seq) cut at its events, oldest first.
    Lives without a reading (two events in a row) are left out; numbers count them all the same."""
    lives: list[Life] = []
    start = np.iinfo(np.int64).min
    number = 0
    for seq, kind in _boundaries(events):
        index = np.flatnonzero((readings.seq > start) & (readings.seq <= seq))
        if index.size:
            lives.append(Life(readings.equipment_id, number, readings.take(index), kind, seq))
        number += 1
        start = seq
    rest = np.flatnonzero(readings.seq > start)
    if rest.size:
        lives.append(Life(readings.equipment_id, number, readings.take(rest), None, None))
    return lives


def fleet_lives(histories: Mapping[str, Block], events: Iterable[EquipmentEvent]) -> list[Life]:
    """Every machine's lives, machines in id order."""
    per_machine: dict[str, list[EquipmentEvent]] = {}
    for event in events:
        per_machine.setdefault(event.equipment_id, []).append(event)
    return [
        life for eid in sorted(histories) for life in split_lives(histories[eid], per_machine.get(eid, []))
    ]
