"""The last readings a machine applied, by seq: its current window and what placing a late one needs.

A reading that arrives after later ones were applied (sent out of order, or resent after a failure)
changes every window that ends at or after its seq. Recomputing those windows needs the rows of the
current window plus the `window - 1` rows before its oldest one, so `2 * window - 1` rows are kept,
each with its seq and its timestamp (epoch seconds: an alert names the reading that decided it);
the current window is their last `window` rows.
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import Any

import numpy as np

from apps.common.features import RollingWindow


class RecentReadings:
    __slots__ = ("__weakref__", "_rows", "seqs", "times", "window")  # weakref: codec.py keys its cache by it

    def __init__(self, window: int, n_columns: int) -> None:
        self.window = window
        self._rows = RollingWindow(2 * window - 1, n_columns)
        self.seqs: deque[int] = deque(maxlen=2 * window - 1)
        self.times: deque[float] = deque(maxlen=2 * window - 1)

    @property
    def n_columns(self) -> int:
        return self._rows.n_columns

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def window_full(self) -> bool:
        return len(self._rows) >= self.window

    def append(self, seq: int, row: np.ndarray, at: float) -> None:
        self._rows.append(row)
        self.seqs.append(seq)
        self.times.append(at)

    def last(self, n: int) -> np.ndarray:
        """The newest `n` rows (fewer if fewer are held), oldest first."""
        rows = self._rows.to_array()
        return rows[max(len(rows) - n, 0) :]

    def current_window(self) -> np.ndarray:
        return self.last(self.window)

    def can_place(self, seq: int) -> bool:
        """A late seq can be placed when it falls after the oldest row of the current window."""
        if not self.seqs or seq in self.seqs:
            return False
        oldest = self.seqs[max(len(self.seqs) - self.window, 0)]
        return oldest < seq < self.seqs[-1]

    def insert(self, seq: int, row: np.ndarray, at: float) -> int:
        """Place a late row by its seq; returns how many rows now stand from it to the newest."""
        if not self.can_place(seq):
            raise ValueError(f"seq {seq} cannot be placed among the recent seqs")
        rows, seqs, times = self._rows.to_array(), list(self.seqs), list(self.times)
        i = bisect.bisect_left(seqs, seq)
        rows = np.insert(rows, i, row, axis=0)
        seqs.insert(i, seq)
        times.insert(i, at)
        capacity = self._rows.capacity
        self._rows = RollingWindow(capacity, self.n_columns)
        self._rows.extend(rows[-capacity:])
        self.seqs = deque(seqs[-capacity:], maxlen=capacity)
        self.times = deque(times[-capacity:], maxlen=capacity)
        return len(seqs) - i

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self._rows.to_dict(), "seqs": list(self.seqs), "times": list(self.times)}

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], window: int, last_seq: int, default_time: float = 0.0
    ) -> RecentReadings:
        """Also reads the state of before this class (`data` = a plain RollingWindow of `window` rows,
        whose seqs are then taken as consecutive up to `last_seq`) and of before timestamps were kept
        (each row then gets `default_time`)."""
        stored = RollingWindow.from_dict(data["rows"] if "rows" in data else data)
        rows = stored.to_array()
        seqs = data.get("seqs") or list(range(last_seq - len(rows) + 1, last_seq + 1))
        times = data.get("times") or [default_time] * len(rows)
        if not len(seqs) == len(times) == len(rows):
            raise ValueError("recent readings: as many seqs and times as rows are needed")
        recent = cls(window, stored.n_columns)
        for seq, row, at in zip(seqs, rows, times, strict=True):
            recent.append(int(seq), row, float(at))
        return recent
