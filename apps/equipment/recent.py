"""The last readings a machine applied, by seq: its current window and what placing a late one needs.

A reading that arrives after later ones were applied (sent out of order, or resent after a failure)
changes every window that ends at or after its seq. Recomputing those windows needs the rows of the
current window plus the `window - 1` rows before its oldest one, so `2 * window - 1` rows are kept,
each with its seq; the current window is their last `window` rows.
"""

from __future__ import annotations

import bisect
from collections import deque
from typing import Any

import numpy as np

from apps.common.features import RollingWindow


class RecentReadings:
    __slots__ = ("_rows", "seqs", "window")

    def __init__(self, window: int, n_columns: int) -> None:
        self.window = window
        self._rows = RollingWindow(2 * window - 1, n_columns)
        self.seqs: deque[int] = deque(maxlen=2 * window - 1)

    @property
    def n_columns(self) -> int:
        return self._rows.n_columns

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def window_full(self) -> bool:
        return len(self._rows) >= self.window

    def append(self, seq: int, row: np.ndarray) -> None:
        self._rows.append(row)
        self.seqs.append(seq)

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

    def insert(self, seq: int, row: np.ndarray) -> int:
        """Place a late row by its seq; returns how many rows now stand from it to the newest."""
        if not self.can_place(seq):
            raise ValueError(f"seq {seq} cannot be placed among the recent seqs")
        rows, seqs = self._rows.to_array(), list(self.seqs)
        at = bisect.bisect_left(seqs, seq)
        rows = np.insert(rows, at, row, axis=0)
        seqs.insert(at, seq)
        self._rows = RollingWindow(self._rows.capacity, self.n_columns)
        self._rows.extend(rows[-self._rows.capacity :])
        self.seqs = deque(seqs[-self._rows.capacity :], maxlen=self._rows.capacity)
        return len(seqs) - at

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self._rows.to_dict(), "seqs": list(self.seqs)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], window: int, last_seq: int) -> RecentReadings:
        """Also reads the state of before this class (`data` = a plain RollingWindow of `window` rows,
        whose seqs are then taken as consecutive up to `last_seq`)."""
        stored = RollingWindow.from_dict(data["rows"] if "rows" in data else data)
        rows = stored.to_array()
        seqs = data.get("seqs") or list(range(last_seq - len(rows) + 1, last_seq + 1))
        if len(seqs) != len(rows):
            raise ValueError("recent readings: as many seqs as rows are needed")
        recent = cls(window, stored.n_columns)
        for seq, row in zip(seqs, rows, strict=True):
            recent.append(int(seq), row)
        return recent
