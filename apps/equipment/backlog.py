"""Window positions whose prediction is still owed, kept as raw rows so none is ever skipped.

Every applied reading owes one prediction. When inference cannot answer
(down, hung, no model yet), those positions wait here, in order, and are predicted as soon as it
answers again, so the alert hysteresis sees the same sequence of predictions as in an uninterrupted
run. Raw reading rows (sensors and operating settings) are kept rather than features (a fraction of
the size): the features of the owed windows are computed, with the same pipeline as training and the
feature spec of the model served at that moment, when they are predicted.

`rows` holds the `window - 1` rows before the first owed position (its context; a machine younger
than that has its first reading repeated, as training pads), then one row per owed position; `seqs`
the seq of each owed position and `times` its reading's timestamp (epoch seconds: the alert a
prediction decides carries its reading); ages are consecutive from `first_age`.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from apps.common.contracts import FeatureVector
from apps.common.features import (
    FeatureSpec,
    decode_array,
    encode_array,
    feature_names,
    pad_start,
    reading_columns,
    reading_features,
)
from apps.common.profiles import EquipmentProfile

# A machine owes at most this many predictions; beyond it (an outage of hours at 1 Hz) the oldest are
# given up and counted in `skipped`, so the actor state stays bounded.
MAX_OWED: Final = 4096


@dataclass(slots=True)
class PredictionBacklog:
    profile: EquipmentProfile
    rows: np.ndarray | None = None
    seqs: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    first_age: float = 0.0
    skipped: int = 0

    def __len__(self) -> int:
        return len(self.seqs)

    def add(self, combined: np.ndarray, seqs: list[int], times: list[float], first_age: float) -> None:
        """Owe predictions for `seqs` (read at `times`), the windows ending at the last len(seqs) rows
        of `combined`.

        `combined` is [rows before the batch + the batch's new rows], as the actor windows them; when
        the backlog already owes something, only the new rows are appended (the context is there).
        """
        if not seqs:
            return
        if self.rows is None:
            # `combined` holds the machine's readings from its first one when it is shorter than this.
            need = self.profile.window - 1 + len(seqs)
            self.rows = np.array(pad_start(np.asarray(combined), need)[-need:], dtype=np.float64)
            self.first_age = first_age
        else:
            self.rows = np.vstack([self.rows, combined[len(combined) - len(seqs) :]])
        self.seqs.extend(seqs)
        self.times.extend(times)
        if len(self.seqs) > MAX_OWED:
            self.drop(len(self.seqs) - MAX_OWED)
        assert self.rows is not None and len(self.rows) == self.profile.window - 1 + len(self.seqs)

    def insert(self, seq: int, row: np.ndarray, at: float) -> None:
        """A late reading landed among the owed positions (after the first): owe its window too, in order."""
        if self.rows is None or not self.seqs or seq <= self.seqs[0]:
            raise ValueError(f"seq {seq} is not among the owed positions")
        i = bisect.bisect_left(self.seqs, seq)
        self.rows = np.insert(self.rows, self.profile.window - 1 + i, row, axis=0)
        self.seqs.insert(i, seq)
        self.times.insert(i, at)

    def features(
        self, equipment_id: str, limit: int, spec: FeatureSpec, head: np.ndarray | None = None
    ) -> list[FeatureVector]:
        """Feature vectors of the first `limit` owed positions, oldest first, as `spec` computes them
        (`head`: the life's first readings, for a health index's from_start)."""
        if self.rows is None or not self.seqs:
            return []
        n = min(limit, len(self.seqs))
        w = self.profile.window
        rows = self.rows[: w - 1 + n]
        ages = self.first_age - (w - 1) + np.arange(len(rows), dtype=np.float64)
        feats = reading_features(rows, self.profile, spec, ages, pad=False, head=head)
        # Checked here for the whole block at once; each vector is then built without validation (a
        # check of every value, vector by vector, cost more CPU than computing the features).
        bad = np.argwhere(~np.isfinite(feats))
        if len(bad):
            j, k = (int(i) for i in bad[0])
            raise ValueError(f"feature {k} of the window ending at seq {self.seqs[j]} is not finite")
        names = feature_names(self.profile, spec)
        values = feats.tolist()
        return [
            FeatureVector.model_construct(
                equipment_id=equipment_id,
                profile=self.profile.name,
                feature_names=names,
                values=values[j],
                window_end_seq=self.seqs[j],
                age_cycles=values[j][-1],
            )
            for j in range(n)
        ]

    def settle(self, n: int) -> None:
        """The first `n` owed positions got their predictions."""
        self._pop(n)

    def drop(self, n: int) -> None:
        """Give up the first `n` owed positions (bounded state): counted, never silent."""
        self.skipped += min(n, len(self.seqs))
        self._pop(n)

    def _pop(self, n: int) -> None:
        n = min(n, len(self.seqs))
        if n == 0:
            return
        del self.seqs[:n]
        del self.times[:n]
        self.first_age += n
        if not self.seqs:
            self.rows = None
        else:
            assert self.rows is not None
            self.rows = self.rows[n:]

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": None if self.rows is None else encode_array(self.rows),
            "seqs": self.seqs,
            "times": self.times,
            "first_age": self.first_age,
            "skipped": self.skipped,
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any] | None, profile: EquipmentProfile, default_time: float = 0.0
    ) -> PredictionBacklog:
        """`default_time`: the timestamp given to owed positions stored before times were kept."""
        if not data:
            return cls(profile)
        rows = data.get("rows")
        seqs = [int(s) for s in data["seqs"]]
        return cls(
            profile,
            None if rows is None else decode_array(rows, (-1, len(reading_columns(profile)))),
            seqs,
            [float(t) for t in data.get("times") or [default_time] * len(seqs)],
            float(data["first_age"]),
            int(data.get("skipped", 0)),
        )
