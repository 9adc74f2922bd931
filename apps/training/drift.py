"""Feature drift (pure): the population stability index of each feature, recent inputs vs training.

The reference is taken from the training rows when a model is trained and kept in its model card: per
feature, the inner edges of ten equal-population bins of the training values and the share of training
rows in each bin. Recent inputs are counted in the same bins and

    PSI = sum over bins of (recent share - training share) * ln(recent share / training share)

with both shares floored at `EPSILON` so an empty bin does not make it infinite. The usual reading:
under 0.1 stable, 0.1-0.25 a moderate shift, over 0.25 a significant one (`DRIFT_LEVELS`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

import numpy as np

from apps.common.contracts import FeatureReference
from apps.common.registry import DriftLevel, DriftReport, FeatureDrift

BINS: Final = 10
EPSILON: Final = 1e-4
DRIFT_LEVELS: Final = ((0.25, "significant"), (0.1, "moderate"), (0.0, "stable"))


def psi(expected: Sequence[float], actual: Sequence[float], epsilon: float = EPSILON) -> float:
    """Population stability index of two distributions over the same bins (shares, each summing to 1)."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), epsilon)
    a = np.maximum(np.asarray(actual, dtype=np.float64), epsilon)
    if e.shape != a.shape or e.ndim != 1:
        raise ValueError(f"expected and actual need the same bins, got {e.shape} and {a.shape}")
    return float(np.sum((a - e) * np.log(a / e)))


def shares(values: np.ndarray, edges: Sequence[float]) -> list[float]:
    """Share of `values` in each bin `(-inf, e0], (e0, e1], ..., (e_last, inf)`; NaN values are left out."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        raise ValueError("no values to count")
    counts = np.bincount(np.searchsorted(np.asarray(edges), v, side="left"), minlength=len(edges) + 1)
    return (counts / v.size).tolist()


def reference(X: np.ndarray, names: Sequence[str], bins: int = BINS) -> list[FeatureReference]:
    """Each feature's equal-population bin edges and training shares (a constant feature: one bin)."""
    out = []
    for j, name in enumerate(names):
        column = np.asarray(X[:, j], dtype=np.float64)
        edges = np.unique(np.quantile(column, np.linspace(0, 1, bins + 1)[1:-1]))
        out.append(FeatureReference(name=name, edges=edges.tolist(), shares=shares(column, edges)))
    return out


def level(value: float) -> DriftLevel:
    return next(name for bound, name in DRIFT_LEVELS if value >= bound)  # type: ignore[return-value]


def drift_report(
    model: str, version: int, refs: Sequence[FeatureReference], X: np.ndarray, machines: int, now: datetime
) -> DriftReport:
    """PSI of each feature of the recent rows `X` (columns in the reference's order)."""
    if X.shape[0] == 0:
        raise ValueError("no recent feature rows")
    if X.shape[1] != len(refs):
        raise ValueError(f"{X.shape[1]} recent features, the reference has {len(refs)}")
    features = []
    for j, ref in enumerate(refs):
        value = psi(ref.shares, shares(X[:, j], ref.edges))
        features.append(FeatureDrift(name=ref.name, psi=value, level=level(value)))
    features.sort(key=lambda f: -f.psi)
    top = features[0].psi if features else 0.0
    return DriftReport(
        model=model,
        version=version,
        computed_at=now,
        rows=int(X.shape[0]),
        machines=machines,
        max_psi=top,
        level=level(top),
        features=features,
    )
