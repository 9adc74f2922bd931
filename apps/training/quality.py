"""The RUL model that predicts every unit: per-condition normalisation, padded windows, LightGBM.

Selection never looks at a test set: `grouped_cv` holds out whole training machines, truncates each
held-out run at random points (as the C-MAPSS test sets are truncated) and scores the prediction at
the truncation, against the RUL capped like the training target.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

import numpy as np

from apps.common.cmapss import column, rul_targets, sensor_matrix
from apps.common.features import OperatingConditions, feature_names, offline_features
from apps.common.profiles import EquipmentProfile
from apps.training.trainer import ONNX_INPUT_NAME, Predictor, TrainingSet, fingerprint_units, phm08_score

# Fixed before any test set was scored (the measured headroom); grouped CV compares variants.
LGBM_PARAMS: Final[dict[str, Any]] = {
    "n_estimators": 500,
    "learning_rate": 0.03,
    "num_leaves": 31,
    "min_child_samples": 50,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.5,
    "random_state": 7,
    "verbose": -1,
}
# Trees are summed in float32 by ONNX Runtime: summing groups of 50 keeps the rounding under 1e-4.
_ONNX_TREES_PER_SUM: Final = 50
_ONNX_OPSET: Final = 15  # the highest onnxmltools' LightGBM converter supports


class Regressor(Predictor, Protocol):
    def fit(self, X: np.ndarray, y: np.ndarray) -> Any: ...


def settings_matrix(trajectory: np.ndarray, profile: EquipmentProfile) -> np.ndarray:
    return np.column_stack([column(trajectory, name) for name in profile.operating_settings])


def fit_conditions(units: Mapping[int, np.ndarray], profile: EquipmentProfile) -> OperatingConditions:
    """The operating conditions of the training machines, distances scaled by the profile's ranges."""
    spans = np.array([hi - lo for lo, hi in (profile.channels[s] for s in profile.operating_settings)])
    trajs = [units[u] for u in sorted(units)]
    return OperatingConditions.fit(
        np.vstack([settings_matrix(t, profile) for t in trajs]),
        np.vstack([sensor_matrix(t, profile) for t in trajs]),
        spans,
    )


def unit_features(
    trajectory: np.ndarray, profile: EquipmentProfile, conditions: OperatingConditions | None
) -> np.ndarray:
    """Features at every reading of one machine (the first ones padded), as the actor computes them."""
    return offline_features(
        sensor_matrix(trajectory, profile),
        profile,
        ages=trajectory[:, 1].astype(np.float64),
        settings=settings_matrix(trajectory, profile),
        conditions=conditions,
        pad=True,
    )


def build_padded_set(
    units: Mapping[int, np.ndarray],
    profile: EquipmentProfile,
    conditions: OperatingConditions | None,
    rul_cap: float | None,
) -> TrainingSet:
    """One row per reading of every run-to-failure unit, labelled with the capped RUL there.

    Features are rounded to float32, the precision inference serves them in: a tree fitted on float64
    values can put a threshold between a value and its float32 rounding, and ONNX Runtime then takes
    the other branch (differences over 1 cycle were measured before this rounding).
    """
    xs, ys, us = [], [], []
    for unit in sorted(units):
        traj = units[unit]
        xs.append(unit_features(traj, profile, conditions))
        ys.append(rul_targets(traj.shape[0], rul_cap))
        us.append(np.full(traj.shape[0], unit, dtype=np.int64))
    return TrainingSet(
        X=np.vstack(xs).astype(np.float32).astype(np.float64),
        y=np.concatenate(ys),
        units=np.concatenate(us),
        feature_names=feature_names(profile),
        fingerprint=fingerprint_units(units),
    )


def last_features(
    units: Mapping[int, np.ndarray], profile: EquipmentProfile, conditions: OperatingConditions | None
) -> tuple[list[int], np.ndarray]:
    """Features at the last reading of every unit, however short (unit order)."""
    ids = sorted(units)
    return ids, np.vstack([unit_features(units[u][-profile.window :], profile, conditions)[-1] for u in ids])


def score(y_true: np.ndarray, y_pred: np.ndarray, rul_cap: float, n_units: int) -> dict[str, float]:
    """RMSE against the capped truth (the published convention), uncapped RMSE, MAE, PHM08, coverage."""
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    return {
        "rmse_capped": math.sqrt(float(np.mean((p - np.minimum(t, rul_cap)) ** 2))),
        "rmse": math.sqrt(float(np.mean((p - t) ** 2))),
        "mae": float(np.mean(np.abs(p - t))),
        "phm08_score": phm08_score(t, p),
        "coverage": len(t) / n_units,
    }


def truncate_runs(
    units: Mapping[int, np.ndarray], per_unit: int, seed: int
) -> tuple[dict[int, np.ndarray], dict[int, float]]:
    """Each run cut at `per_unit` random cycles (uniform over its life): test-set-like trajectories."""
    rng = np.random.default_rng(seed)
    cut: dict[int, np.ndarray] = {}
    truth: dict[int, float] = {}
    for unit in sorted(units):
        traj = units[unit]
        for j, end in enumerate(rng.integers(1, traj.shape[0] + 1, size=per_unit)):
            key = unit * per_unit + j
            cut[key], truth[key] = traj[:end], float(traj.shape[0] - end)
    return cut, truth


def grouped_cv(
    units: Mapping[int, np.ndarray],
    profile: EquipmentProfile,
    make_model: Callable[[], Regressor],
    *,
    normalise: bool,
    rul_cap: float = 125.0,
    folds: int = 3,
    per_unit: int = 5,
    seed: int = 11,
) -> dict[str, float]:
    """Mean metrics over folds of held-out training machines, scored on their truncated runs.

    The conditions are refitted on each fold's training machines, like everything else learnt.
    """
    order = np.random.default_rng(seed).permutation(sorted(units))
    results: list[dict[str, float]] = []
    for k in range(folds):
        held = {int(u) for u in order[k::folds]}
        train = {u: t for u, t in units.items() if u not in held}
        conditions = fit_conditions(train, profile) if normalise else None
        ts = build_padded_set(train, profile, conditions, rul_cap)
        model = make_model()
        model.fit(ts.X, ts.y)
        cut, truth = truncate_runs({u: units[u] for u in held}, per_unit, seed + k)
        ids, X = last_features(cut, profile, conditions)
        results.append(score(np.array([truth[i] for i in ids]), model.predict(X), rul_cap, len(cut)))
    return {key: float(np.mean([r[key] for r in results])) for key in results[0]}


def lightgbm(params: Mapping[str, Any] | None = None) -> Regressor:
    from lightgbm import LGBMRegressor  # heavy import: only training pays for it

    model: Regressor = LGBMRegressor(**{**LGBM_PARAMS, **(params or {})})
    return model


_THRESHOLDS = re.compile(r"^threshold=(.*)$", re.MULTILINE)
_TREE_SIZES = re.compile(r"^tree_sizes=.*\n", re.MULTILINE)


def _down_to_float32(value: float) -> float:
    rounded = np.float32(value)
    if float(rounded) > value:
        rounded = np.nextafter(rounded, np.float32(-np.inf))
    return float(rounded)


def float32_thresholds(model: Any) -> None:
    """Round every split threshold of a fitted LGBMRegressor down to a float32 value, in place.

    Inference feeds float32 features, and ONNX stores thresholds as float32 rounded to nearest: a
    threshold between two adjacent float32 values can round up onto the larger one and send it the
    other way. For a float32 x, `x <= t` equals `x <= (t rounded down to float32)`, so this changes
    no prediction on what is served, and ONNX then holds the thresholds exactly.
    """
    from lightgbm import Booster

    def snap(match: re.Match[str]) -> str:
        return "threshold=" + " ".join(repr(_down_to_float32(float(v))) for v in match.group(1).split())

    text = _THRESHOLDS.sub(snap, model.booster_.model_to_string())
    # The byte sizes of the trees no longer hold; without them LightGBM reads the trees in sequence.
    text = _TREE_SIZES.sub("", text)
    model._Booster = Booster(model_str=text)  # the wrapper has no public setter for its booster


def export_lightgbm(model: Any, n_features: int) -> bytes:
    """ONNX with the same input as every other model: float32 "features" of shape [batch, F]."""
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    onx = convert_lightgbm(
        model,
        initial_types=[(ONNX_INPUT_NAME, FloatTensorType([None, n_features]))],
        target_opset=_ONNX_OPSET,
        zipmap=False,
        # onnxmltools refuses to split an ensemble smaller than one group
        split=_ONNX_TREES_PER_SUM if model.n_estimators_ > _ONNX_TREES_PER_SUM else None,
    )
    return onx.SerializeToString()
