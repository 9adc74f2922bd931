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
    """One window's counts: `counts[j, b]` rows whose feature j fell in bin b (a feature with fewer
    edges than the widest leaves its last columns at 0)."""

    since: datetime
    counts: np.ndarray
    rows: int = 0


@dataclass(slots=True)
class InputTally:
    """The counts of one served version's inputs, in the current and the previous window."""

    model: str
    version: int
    names: list[str]
    columns: list[int] | None  # where each reference feature is in a row; None: in the same order
    edges: list[np.ndarray]
    padded: np.ndarray  # features x widest edges, +inf past a feature's own: no value is above it
    offsets: np.ndarray  # feature j's bins are j * (widest + 1) + bin in one flat count
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
        padded = np.full((len(edges), max(len(e) for e in edges)), np.inf)
        for j, e in enumerate(edges):
            padded[j, : len(e)] = e
        columns = [card.feature_names.index(r.name) for r in refs]
        return cls(
            model=card.name,
            version=card.version,
            names=[r.name for r in refs],
            columns=None if columns == list(range(len(card.feature_names))) else columns,
            edges=edges,
            padded=padded,
            offsets=np.arange(len(edges), dtype=np.int64) * (padded.shape[1] + 1),
            window_seconds=window_seconds,
            current=_empty(padded, now),
        )

    def add(self, rows: np.ndarray, now: datetime) -> None:
        """Count a batch of predicted rows (finite: PredictRequest refuses anything else)."""
        self._rotate(now)
        if rows.ndim != 2 or rows.shape[0] == 0:
            return
        # float32 values are exact in float64, so they fall where training's values did
        X = (rows if self.columns is None else rows[:, self.columns]).astype(np.float64)
        # A value's bin is the number of its feature's edges strictly below it: searchsorted's
        # side="left", as drift.shares counts the training rows (a value on an edge falls in the bin
        # below). One comparison per edge over the whole batch: a per-feature searchsorted made a
        # one-row request cost ~0.25 ms with 85 features, this ~0.05 ms.
        width = self.padded.shape[1] + 1
        # a small accumulator: adding a comparison into int64 costs 3.5 times more
        bins = np.zeros(X.shape, dtype=np.int8 if width < 127 else np.int32)
        for e in range(self.padded.shape[1]):
            np.add(bins, X > self.padded[:, e], out=bins, casting="unsafe")
        flat = (bins + self.offsets).ravel()
        self.current.counts += np.bincount(flat, minlength=X.shape[1] * width).reshape(X.shape[1], width)
        self.current.rows += int(rows.shape[0])

    def snapshot(self, now: datetime) -> InputCounts:
        """The counts of the previous and the current window together."""
        self._rotate(now)
        windows = [t for t in (self.previous, self.current) if t is not None]
        total = sum(t.counts for t in windows)
        return InputCounts(
            model=self.model,
            version=self.version,
            since=windows[0].since,
            rows=sum(t.rows for t in windows),
            features=[
                FeatureCounts(name=name, edges=edges.tolist(), counts=total[j, : len(edges) + 1].tolist())
                for j, (name, edges) in enumerate(zip(self.names, self.edges, strict=True))
            ],
        )

    def _rotate(self, now: datetime) -> None:
        elapsed = (now - self.current.since).total_seconds()
        if elapsed < self.window_seconds:
            return
        if elapsed < 2 * self.window_seconds:
            self.previous, self.current = self.current, _empty(self.padded, now)
        else:  # nothing came for more than a window: both windows are older than one
            self.previous, self.current = None, _empty(self.padded, now)


def _empty(padded: np.ndarray, now: datetime) -> Tally:
    return Tally(since=now, counts=np.zeros((padded.shape[0], padded.shape[1] + 1), dtype=np.int64))
