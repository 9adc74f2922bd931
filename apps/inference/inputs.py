"""What a served model is fed, counted cheaply (pure): the rows of every prediction, per feature, in the
bins of the model card's training reference (`feature_reference`: inner edges of equal-population bins).

Training measures drift as the population stability index of those counts against the card's training
shares (apps/training/drift.py). Nothing but a running count per feature per bin is kept, never a row.
Counts are kept in two windows of `window_seconds`: the current one and the one before, so an answer
covers between one and two windows of the most recent inputs (a nightly drift check with a 12 h window
sees the last 12 to 24 hours), and counts from long ago do not hide a recent shift. A new version starts
from nothing: its bins are its own card's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from apps.common.contracts import ModelCard
from apps.common.registry import FeatureCounts, InputCounts


@dataclass(slots=True)
class Tally:
    """One window's counts: `counts[j][b]` rows whose feature j fell in bin b."""

    since: datetime
    counts: list[np.ndarray]
    rows: int = 0


@dataclass(slots=True)
class InputTally:
    """The counts of one served version's inputs, in the current and the previous window."""

    model: str
    version: int
    names: list[str]
    columns: list[int]  # where each reference feature is in a row (the card's feature_names order)
    edges: list[np.ndarray]
    window_seconds: float
    current: Tally
    previous: Tally | None = field(default=None)

    @classmethod
    def of(cls, card: ModelCard, now: datetime, window_seconds: float) -> InputTally | None:
        """The tally of a version, or None when its card has no training reference to count against."""
        if not card.feature_reference:
            return None
        refs = card.feature_reference
        unknown = [r.name for r in refs if r.name not in card.feature_names]
        if unknown:
            raise ValueError(
                f"{card.name} v{card.version}: reference features {unknown} are not model inputs"
            )
        edges = [np.asarray(r.edges, dtype=np.float64) for r in refs]
        return cls(
            model=card.name,
            version=card.version,
            names=[r.name for r in refs],
            columns=[card.feature_names.index(r.name) for r in refs],
            edges=edges,
            window_seconds=window_seconds,
            current=_empty(edges, now),
        )

    def add(self, rows: np.ndarray, now: datetime) -> None:
        """Count a batch of predicted rows (finite: PredictRequest refuses anything else)."""
        self._rotate(now)
        if rows.ndim != 2 or rows.shape[0] == 0:
            return
        for j, (column, edges) in enumerate(zip(self.columns, self.edges, strict=True)):
            # side="left": a value on an edge falls in the bin below it, as drift.shares counts the
            # training rows; float32 values are exact in float64, so they fall where training's did
            bins = np.searchsorted(edges, rows[:, column].astype(np.float64), side="left")
            self.current.counts[j] += np.bincount(bins, minlength=len(edges) + 1)
        self.current.rows += int(rows.shape[0])

    def snapshot(self, now: datetime) -> InputCounts:
        """The counts of the previous and the current window together."""
        self._rotate(now)
        windows = [t for t in (self.previous, self.current) if t is not None]
        totals = [sum(t.counts[j] for t in windows) for j in range(len(self.names))]
        return InputCounts(
            model=self.model,
            version=self.version,
            since=windows[0].since,
            rows=sum(t.rows for t in windows),
            features=[
                FeatureCounts(name=name, edges=edges.tolist(), counts=[int(c) for c in total])
                for name, edges, total in zip(self.names, self.edges, totals, strict=True)
            ],
        )

    def _rotate(self, now: datetime) -> None:
        elapsed = (now - self.current.since).total_seconds()
        if elapsed < self.window_seconds:
            return
        if elapsed < 2 * self.window_seconds:
            self.previous, self.current = self.current, _empty(self.edges, now)
        else:  # nothing came for more than a window: both windows are older than one
            self.previous, self.current = None, _empty(self.edges, now)


def _empty(edges: list[np.ndarray], now: datetime) -> Tally:
    return Tally(since=now, counts=[np.zeros(len(e) + 1, dtype=np.int64) for e in edges])
