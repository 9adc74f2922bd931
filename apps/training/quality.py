"""The RUL model: the shared feature pipeline (per-condition normalisation, padded windows), LightGBM,
ONNX, and the training job that registers it with its feature spec in the card.

Every unit gets a prediction, however short (padding). Selection never looks at a test set:
`grouped_cv` holds out whole training machines, truncates each held-out run at random points (as the
C-MAPSS test sets are truncated) and scores the prediction at the truncation, against the RUL capped
like the training target; `holdout_metrics` does the same on fixed cuts for the promotion gate and the
card. Trajectories are in the C-MAPSS layout (apps.common.cmapss.COLUMNS, column `cycle` = readings
since the run began, as the actor counts them), whether from the shipped files or the fleet's archive.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import numpy as np

from apps.common.cmapss import column, rul_targets
from apps.common.contracts import ModelCard
from apps.common.features import (
    EXTRA_STATISTICS,
    STATISTICS,
    FeatureSpec,
    HealthIndex,
    OperatingConditions,
    feature_names,
    reading_columns,
    reading_features,
)
from apps.common.profiles import EquipmentProfile
from apps.training.trainer import (
    DEFAULT_RUL_CAP,
    ONNX_INPUT_NAME,
    Predictor,
    ProgressCallback,
    TrainingSet,
    check_onnx_matches,
    fingerprint_units,
    make_model_card,
    onnx_predict,
    phm08_score,
)

# Chosen by grouped CV on FD001/FD002 training machines (bench/bench_models.py), never on test units.
LGBM_PARAMS: Final[dict[str, Any]] = {
    "n_estimators": 500,
    "learning_rate": 0.03,
    # 15 leaves of at least 100 rows: grouped CV on FD001 and FD002 with the recent statistics (5 seeds:
    # 9.96 vs 9.98 with 31 leaves of 50 on FD001; one seed: 11.37 vs 11.38 on FD002).
    "num_leaves": 15,
    "min_child_samples": 100,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.5,
    "random_state": 7,
    # One thread: LightGBM's OpenMP threads spin while waiting, and on a loaded 2-core machine two of
    # them took 470 s to fit FD001 where one took 26 s (measured while other jobs ran).
    "n_jobs": 1,
    "verbose": -1,
}
# The mean of this many LightGBM models, fitted alike but for their seeds (bagging, feature sampling),
# served as one model (`SeedAverage`): grouped CV on FD001/FD002 training machines (bench/bench_models.py,
# bench/README.md). 5 paid a little more on CV but took 120 s to fit FD002 on the loaded machine, at
# the training job's two-minute budget; 3 take ~60% of that.
N_SEEDS: Final = 3
# The window statistics of every sensor (apps/common/features.py), chosen by the same CV: the six plus the
# recent ones, less the window's min and max (its noisiest statistics: bench/cv_rul.py, every cut of
# every held-out run, capped RMSE without them vs with: FD001 9.68 vs 10.15, FD002 11.30 vs 11.59).
FEATURE_STATISTICS: Final[tuple[str, ...]] = (
    *(s for s in STATISTICS if s not in ("min", "max")),
    *EXTRA_STATISTICS,
)
# A linear health index of the sensors with its window statistics (apps/common/features.HealthIndex):
# bench/cv_rul.py, every cut of every held-out training run, capped RMSE with vs without it: see
# bench/README.md's issue-11 section.
HEALTH_INDEX: Final = True
# Its `from_start` over the life's first 20 readings (apps/common/features.FROM_START; 0: none): the
# same CV, with vs without it (bench/README.md's issue-11 section).
HEALTH_EARLY_READINGS: Final = 20
# Trees are summed in float32 by ONNX Runtime: summing groups of 50 keeps the rounding under 1e-4.
_ONNX_TREES_PER_SUM: Final = 50
_ONNX_OPSET: Final = 15  # the highest onnxmltools' LightGBM converter supports
GATE_SEED: Final = 2024  # held-out runs are cut at the same points for every model: comparable numbers
GATE_CUTS_PER_RUN: Final = 5


class Regressor(Predictor, Protocol):
    def fit(self, X: np.ndarray, y: np.ndarray) -> Any: ...


def settings_matrix(trajectory: np.ndarray, profile: EquipmentProfile) -> np.ndarray:
    return np.column_stack([column(trajectory, name) for name in profile.operating_settings])


def reading_rows(trajectory: np.ndarray, profile: EquipmentProfile) -> np.ndarray:
    """A trajectory's readings as the actor keeps them (apps.common.features.reading_columns)."""
    return np.column_stack([column(trajectory, name) for name in reading_columns(profile)])


def fit_conditions(units: Mapping[int, np.ndarray], profile: EquipmentProfile) -> OperatingConditions:
    """The operating conditions of the training machines, distances scaled by the profile's ranges."""
    spans = np.array([hi - lo for lo, hi in (profile.channels[s] for s in profile.operating_settings)])
    rows = np.vstack([reading_rows(units[u], profile) for u in sorted(units)])
    s = len(profile.informative_sensors)
    return OperatingConditions.fit(rows[:, s:], rows[:, :s], spans)


def fit_health_index(
    units: Mapping[int, np.ndarray],
    profile: EquipmentProfile,
    conditions: OperatingConditions | None,
    rul_cap: float | None = DEFAULT_RUL_CAP,
) -> HealthIndex:
    """The linear health index of the run-to-failure `units`: ridge of the capped RUL at every reading
    on its (standardised) sensors."""
    s = len(profile.informative_sensors)
    rows = [reading_rows(units[u], profile) for u in sorted(units)]
    x = np.vstack(
        [r[:, :s] if conditions is None else conditions.normalise(r[:, :s], r[:, s:]) for r in rows]
    )
    y = np.concatenate([rul_targets(units[u].shape[0], rul_cap) for u in sorted(units)])
    return HealthIndex.fit(x, y)


def fit_spec(
    units: Mapping[int, np.ndarray],
    profile: EquipmentProfile,
    normalise: bool = True,
    statistics: tuple[str, ...] = FEATURE_STATISTICS,
    health_index: bool = HEALTH_INDEX,
    rul_cap: float | None = DEFAULT_RUL_CAP,
    early_readings: int = HEALTH_EARLY_READINGS,
) -> FeatureSpec:
    """The feature spec learnt from training machines: the profile's window, their conditions, the
    window statistics, their health index (with its `from_start` over `early_readings`)."""
    conditions = fit_conditions(units, profile) if normalise else None
    index = None
    if health_index:
        fitted = fit_health_index(units, profile, conditions, rul_cap)
        index = fitted.model_copy(update={"early_readings": early_readings})
    return FeatureSpec(
        window=profile.window, conditions=conditions, statistics=statistics, health_index=index
    )


def unit_features(trajectory: np.ndarray, profile: EquipmentProfile, spec: FeatureSpec) -> np.ndarray:
    """Features at every reading of one machine (the first ones padded), as the actor computes them."""
    return reading_features(
        reading_rows(trajectory, profile), profile, spec, trajectory[:, 1].astype(np.float64), pad=True
    )


def build_padded_set(
    units: Mapping[int, np.ndarray], profile: EquipmentProfile, spec: FeatureSpec, rul_cap: float | None
) -> TrainingSet:
    """One row per reading of every run-to-failure unit, labelled with the capped RUL there.

    Features are rounded to float32, the precision inference serves them in: a tree fitted on float64
    values can put a threshold between a value and its float32 rounding, and ONNX Runtime then takes
    the other branch (differences over 1 cycle were measured before this rounding).
    """
    xs, ys, us = [], [], []
    for unit in sorted(units):
        traj = units[unit]
        xs.append(unit_features(traj, profile, spec))
        ys.append(rul_targets(traj.shape[0], rul_cap))
        us.append(np.full(traj.shape[0], unit, dtype=np.int64))
    return TrainingSet(
        X=np.vstack(xs).astype(np.float32).astype(np.float64),
        y=np.concatenate(ys),
        units=np.concatenate(us),
        feature_names=feature_names(profile, spec),
        fingerprint=fingerprint_units(units),
    )


def last_features(
    units: Mapping[int, np.ndarray], profile: EquipmentProfile, spec: FeatureSpec
) -> tuple[list[int], np.ndarray]:
    """Features at the last reading of every unit, however short (unit order): the prediction the
    actor makes after the unit's last reading (the whole run: `from_start` needs its first readings)."""
    ids = sorted(units)
    return ids, np.vstack([unit_features(units[u], profile, spec)[-1] for u in ids])


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
    rul_cap: float = DEFAULT_RUL_CAP,
    folds: int = 3,
    per_unit: int = 5,
    seed: int = 11,
    statistics: tuple[str, ...] = FEATURE_STATISTICS,
    health_index: bool = HEALTH_INDEX,
) -> dict[str, float]:
    """Mean metrics over folds of held-out training machines, scored on their truncated runs.

    The conditions are refitted on each fold's training machines, like everything else learnt.
    """
    order = np.random.default_rng(seed).permutation(sorted(units))
    results: list[dict[str, float]] = []
    for k in range(folds):
        held = {int(u) for u in order[k::folds]}
        train = {u: t for u, t in units.items() if u not in held}
        spec = fit_spec(train, profile, normalise, statistics, health_index, rul_cap)
        ts = build_padded_set(train, profile, spec, rul_cap)
        model = make_model()
        model.fit(ts.X, ts.y)
        cut, truth = truncate_runs({u: units[u] for u in held}, per_unit, seed + k)
        ids, X = last_features(cut, profile, spec)
        results.append(score(np.array([truth[i] for i in ids]), model.predict(X), rul_cap, len(cut)))
    return {key: float(np.mean([r[key] for r in results])) for key in results[0]}


def lightgbm(params: Mapping[str, Any] | None = None) -> Regressor:
    from lightgbm import LGBMRegressor  # heavy import: only training pays for it

    model: Regressor = LGBMRegressor(**{**LGBM_PARAMS, **(params or {})})
    return model


_THRESHOLDS = re.compile(r"^threshold=(.*)$", re.MULTILINE)
_TREE_SIZES = re.compile(r"^tree_sizes=.*\n", re.MULTILINE)
_LEAF_VALUES = re.compile(r"^leaf_value=(.*)$", re.MULTILINE)
_TREE_HEADER = re.compile(r"^Tree=\d+$", re.MULTILINE)
_FIRST_TREE = "\nTree=0\n"
_END_OF_TREES = "end of trees"


def average_boosters(texts: list[str]) -> str:
    """One LightGBM model text whose prediction is the mean of the models' (same objective and
    features): every tree of each, its leaf values divided by their number (a LightGBM prediction is
    the sum of its trees' leaves, the average target included in the first tree's)."""
    n = len(texts)
    head = _TREE_SIZES.sub("", texts[0][: texts[0].index(_FIRST_TREE) + 1])
    tail = texts[0][texts[0].index(_END_OF_TREES) :]

    def scaled(match: re.Match[str]) -> str:
        return "leaf_value=" + " ".join(repr(float(v) / n) for v in match.group(1).split())

    trees: list[str] = []
    for text in texts:
        body = text[text.index(_FIRST_TREE) + 1 : text.index(_END_OF_TREES)]
        trees += [_LEAF_VALUES.sub(scaled, t) for t in _TREE_HEADER.split(body)[1:]]
    return head + "".join(f"Tree={i}{t}" for i, t in enumerate(trees)) + tail


class SeedAverage:
    """The mean of `n_seeds` LightGBM regressors alike but for `random_state` (their bagging and
    feature sampling differ), held as one LGBMRegressor (`model_`) whose trees are all of theirs,
    scaled: exported to ONNX and checked like a single model."""

    def __init__(self, params: Mapping[str, Any] | None = None, n_seeds: int = N_SEEDS) -> None:
        self.params = {**LGBM_PARAMS, **(params or {})}
        self.n_seeds = int(self.params.pop("n_seeds", n_seeds))
        if self.n_seeds < 1:
            raise ValueError(f"n_seeds must be >= 1, got {self.n_seeds}")
        self.model_: Any = None

    @property
    def rounds(self) -> int:
        """Boosting rounds in all: each model's times their number."""
        return int(self.params["n_estimators"]) * self.n_seeds

    def fit(self, X: np.ndarray, y: np.ndarray, on_round: Callable[[int], None] | None = None) -> SeedAverage:
        from lightgbm import Booster, LGBMRegressor

        per_model = int(self.params["n_estimators"])
        models: list[Any] = []
        for i in range(self.n_seeds):
            model = LGBMRegressor(**{**self.params, "random_state": int(self.params["random_state"]) + i})
            done = i * per_model

            def callback(env: Any, done: int = done) -> None:
                if on_round is not None:
                    on_round(done + env.iteration + 1)

            model.fit(X, y, callbacks=[callback])
            models.append(model)
        merged = models[0]
        if self.n_seeds > 1:
            text = average_boosters([m.booster_.model_to_string() for m in models])
            merged._Booster = Booster(model_str=text)  # the wrapper has no public setter for its booster
        self.model_ = merged
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.model_.predict(X), dtype=np.float64)

    def get_params(self) -> dict[str, Any]:
        return {**self.params, "n_seeds": self.n_seeds}


def rul_model(params: Mapping[str, Any] | None = None) -> SeedAverage:
    """The platform's RUL model: `N_SEEDS` LightGBM models averaged (`n_seeds` in `params` overrides)."""
    return SeedAverage(params)


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


def holdout_metrics(
    predict: Callable[[np.ndarray], np.ndarray],
    units: Mapping[int, np.ndarray],
    profile: EquipmentProfile,
    spec: FeatureSpec,
    rul_cap: float = DEFAULT_RUL_CAP,
    per_unit: int = GATE_CUTS_PER_RUN,
) -> dict[str, float]:
    """Metrics of one model on held-out machines' runs, each cut at the gate's fixed random points and
    predicted at the cut with the model's own feature `spec` (the promotion gate and the card)."""
    cut, truth = truncate_runs(units, per_unit, GATE_SEED)
    ids, X = last_features(cut, profile, spec)
    return score(np.array([truth[i] for i in ids]), predict(X), rul_cap, len(cut))


def evaluate_onnx(
    onnx_bytes: bytes, card: ModelCard, units: Mapping[int, np.ndarray], profile: EquipmentProfile
) -> dict[str, float]:
    """A registered version scored on held-out runs exactly as inference serves it: its ONNX, fed the
    features its card's spec computes (a card without one: the profile's window, raw sensors)."""
    spec = card.features or FeatureSpec(window=profile.window)
    cap = DEFAULT_RUL_CAP if card.rul_cap is None else card.rul_cap
    return holdout_metrics(lambda X: onnx_predict(onnx_bytes, X), units, profile, spec, cap)


@dataclass(frozen=True, slots=True)
class TrainingOutcome:
    model: Any
    onnx_bytes: bytes
    card: ModelCard
    training_set: TrainingSet  # the rows fitted on (the drift reference is their distribution)


def _fit_reporting(
    model: SeedAverage, X: np.ndarray, y: np.ndarray, report: ProgressCallback, lo: float, hi: float
) -> None:
    total = model.rounds
    step = max(total // 20, 1)

    def on_round(done: int) -> None:
        if done % step == 0 or done == total:
            report(f"boosting round {done}/{total}", lo + (hi - lo) * done / total)

    model.fit(X, y, on_round)


def run_training(
    *,
    profile: EquipmentProfile,
    train_units: Mapping[int, np.ndarray],
    held_out: Mapping[int, np.ndarray],
    version: int,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    rul_cap: float = DEFAULT_RUL_CAP,
    progress: ProgressCallback | None = None,
) -> TrainingOutcome:
    """The whole job: spec (conditions) and features from `train_units`, LightGBM (`N_SEEDS` averaged),
    ONNX checked within 1e-4 (raises `OnnxMismatch` rather than return an export that disagrees),
    metrics of the ONNX model on the `held_out` machines (never a test set), card with the feature spec
    and coverage."""

    def report(stage: str, fraction: float) -> None:
        if progress is not None:
            progress(stage, fraction)

    report("operating conditions and features", 0.0)
    spec = fit_spec(train_units, profile, rul_cap=rul_cap)
    ts = build_padded_set(train_units, profile, spec, rul_cap)
    model = rul_model(params)
    report("fitting", 0.1)
    _fit_reporting(model, ts.X, ts.y, report, 0.1, 0.85)
    float32_thresholds(model.model_)
    report("exporting to ONNX", 0.87)
    onnx_bytes = export_lightgbm(model.model_, ts.X.shape[1])
    report("checking ONNX against LightGBM", 0.9)
    diff = check_onnx_matches(model, onnx_bytes, ts.X)
    report("scoring held-out machines", 0.94)
    metrics = (
        holdout_metrics(lambda X: onnx_predict(onnx_bytes, X), held_out, profile, spec, rul_cap)
        if held_out
        else {}
    )
    card = make_model_card(
        name=name or profile.model_name,
        version=version,
        profile=profile,
        training_set=ts,
        metrics=metrics,
        onnx_bytes=onnx_bytes,
        rul_cap=rul_cap,
        params=model.get_params(),
        onnx_max_abs_diff=diff,
        features=spec,
    )
    report("done", 1.0)
    return TrainingOutcome(model, onnx_bytes, card, ts)
