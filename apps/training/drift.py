"""Feature drift (pure): the population stability index of each feature, recent inputs vs training.

The reference is taken from the training rows when a model is trained and kept in its model card: per
feature, the inner edges of ten equal-population bins of the training values and the share of training
rows in each bin. Recent inputs are counted in the same bins (by inference as it predicts,
apps/inference/inputs.py: `counts_report`; or from the archive's recent readings: `drift_report`) and

    PSI = sum over bins of (recent share - training share) * ln(recent share / training share)

with both shares floored at `EPSILON` so an empty bin does not make it infinite. The usual reading:
under 0.1 stable, 0.1-0.25 a moderate shift, over 0.25 a significant one (`DRIFT_LEVELS`).

A feature the model does not use (held constant while fitting: the age of a `failure` or `anomaly`
model, named by its card's `unused_features`) is left out of the report and named under `ignored`: its
shift cannot change a prediction, and the age of a fleet drifts by itself as machines grow old.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Final

import numpy as np

from apps.common.contracts import FeatureReference, ModelCard
from apps.common.features import AGE_FEATURE
from apps.common.registry import DriftLevel, DriftReport, FeatureDrift, InputCounts

BINS: Final = 10
EPSILON: Final = 1e-4
DRIFT_LEVELS: Final = ((0.25, "significant"), (0.1, "moderate"), (0.0, "stable"))
# Kinds whose estimators are fitted with the age held constant (kind_failure.py, kind_anomaly.py): what a
# card from before `unused_features` did not say.
AGE_BLIND_KINDS: Final = ("failure", "anomaly")


def unused_features(card: ModelCard) -> set[str]:
    """The features `card`'s model does not use: as its card says, else (a card from before it said)
    the age for the kinds that always held it constant."""
    if card.unused_features is not None:
        return set(card.unused_features)
    return {AGE_FEATURE} if card.kind in AGE_BLIND_KINDS else set()


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


def _report(
    model: str,
    version: int,
    refs: Sequence[FeatureReference],
    recent: list[list[float] | None],
    ignored: Collection[str],
    **fields: object,
) -> DriftReport:
    features = []
    for ref, actual in zip(refs, recent, strict=True):
        if ref.name in ignored or actual is None:
            continue
        value = psi(ref.shares, actual)
        features.append(FeatureDrift(name=ref.name, psi=value, level=level(value)))
    features.sort(key=lambda f: -f.psi)
    top = features[0].psi if features else 0.0
    return DriftReport(
        model=model,
        version=version,
        max_psi=top,
        level=level(top),
        features=features,
        ignored=[ref.name for ref in refs if ref.name in ignored],
        **fields,  # type: ignore[arg-type]
    )


def drift_report(
    model: str,
    version: int,
    refs: Sequence[FeatureReference],
    X: np.ndarray,
    machines: int,
    now: datetime,
    fallback: str | None = None,
    ignored: Collection[str] = (),
) -> DriftReport:
    """PSI of each feature of the recent rows `X` (columns in the reference's order), from the archive;
    the `ignored` features (the model's unused ones) left out."""
    if X.shape[0] == 0:
        raise ValueError("no recent feature rows")
    if X.shape[1] != len(refs):
        raise ValueError(f"{X.shape[1]} recent features, the reference has {len(refs)}")
    recent: list[list[float] | None] = [
        None if ref.name in ignored else shares(X[:, j], ref.edges) for j, ref in enumerate(refs)
    ]
    return _report(
        model, version, refs, recent, ignored, computed_at=now, source="archive", rows=int(X.shape[0]),
        machines=machines, fallback=fallback,
    )  # fmt: skip


def counts_report(
    refs: Sequence[FeatureReference], counts: InputCounts, now: datetime, ignored: Collection[str] = ()
) -> DriftReport:
    """PSI of each feature from inference's counts of the rows it predicted, in the reference's bins;
    the `ignored` features (the model's unused ones) left out, their counts not even read."""
    if counts.rows == 0:
        raise ValueError(f"inference counted no rows of {counts.model} v{counts.version}")
    by_name = {f.name: f for f in counts.features}
    recent: list[list[float] | None] = []
    for ref in refs:
        if ref.name in ignored:
            recent.append(None)
            continue
        counted = by_name.get(ref.name)
        if counted is None or counted.edges != ref.edges or len(counted.counts) != len(ref.edges) + 1:
            raise ValueError(f"inference's counts of {ref.name!r} are not in the reference's bins")
        total = sum(counted.counts)
        if total != counts.rows:
            raise ValueError(f"inference counted {total} values of {ref.name!r} in {counts.rows} rows")
        recent.append([c / total for c in counted.counts])
    return _report(
        counts.model, counts.version, refs, recent, ignored, computed_at=now, source="inference",
        rows=counts.rows, machines=0, since=counts.since,
    )  # fmt: skip
