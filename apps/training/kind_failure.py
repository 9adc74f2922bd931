"""The `failure` model kind (milling, AI4I 2020): P(this reading ends in a failure), calibrated.

Data come as segments of one machine's readings in order (features are windows over them, as the actor
computes them): source `dataset` is the AI4I file as one segment, its last 20% of readings held out
(temporal: neighbouring readings share windows, so a random split would leak); source `archive` is
every life of the profile's machines (a failure event ends one: its last reading is labelled 1, every
other reading 0), one life in five held out whole (runs.is_held_out). The estimator is failure.py's
(gradient boosting, Platt-calibrated), exported to ONNX with one output, the probability, and refused
unless ONNX Runtime matches scikit-learn within 1e-4 on the held-out readings. The age feature is held
constant while fitting (never split on). The gate: held-out log-loss lower by the margin, ROC-AUC no
worse.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np

from apps.common import ai4i
from apps.common.contracts import ModelCard, TrainRequest
from apps.common.features import (
    AGE_FEATURE,
    FeatureSpec,
    feature_names,
    reading_columns,
    reading_features,
)
from apps.common.profiles import EquipmentProfile, ProbabilityThresholds
from apps.training.drift import reference
from apps.training.failure import (
    BASE_PARAMS,
    HELD_OUT_FRACTION,
    export_failure_onnx,
    failure_metrics,
    predict_probability,
    temporal_split,
    train_failure_model,
)
from apps.training.history import Life
from apps.training.kinds import KindData, NoNewData, Progress
from apps.training.promotion import GateRule
from apps.training.runs import HELD_OUT_EVERY, is_held_out, run_key
from apps.training.trainer import (
    TrainingSet,
    check_onnx_matches,
    fingerprint_units,
    make_model_card,
    onnx_predict,
)

AI4I_DATASET: Final = "AI4I2020"
AI4I_MACHINE: Final = "ai4i-mill"  # as `vigil import ai4i` names the file's machine
FAILURE_RULE: Final = GateRule("log_loss", "log-loss", True, "roc_auc", "ROC-AUC", False, digits=4)
# Calibration takes 3 stratified folds: each needs failures, and the held-out side needs one to score.
MIN_FIT_FAILURES: Final = 3
NEEDS: Final = f"readings count only with at least {MIN_FIT_FAILURES} failures to fit and 1 held out"
# A life no failure ended (running, or ended by maintenance) is recorded under its key with this
# suffix, so when the running one later fails its key is one the version has not seen: a new failure.
NO_FAILURE: Final = " (no failure)"


def life_key(equipment_id: str, life: int, failed: bool) -> str:
    return run_key(equipment_id, life) + ("" if failed else NO_FAILURE)


@dataclass(frozen=True, slots=True)
class Segment:
    """Consecutive readings of one machine (one life, or the whole data set file)."""

    key: str
    rows: np.ndarray  # [n, reading columns]: informative sensors, then operating settings
    labels: np.ndarray  # [n] 1.0 where the reading ended in a failure
    held: np.ndarray  # [n] bool: held out of fitting, scored by the gate
    types: tuple[tuple[str, ...], ...] = ()  # failure types per reading, when the data say


def segment_features(segment: Segment, profile: EquipmentProfile, spec: FeatureSpec) -> np.ndarray:
    """Features at every reading (ages 1, 2, ... from the segment's start, the first windows padded,
    as the actor computes them), rounded to float32 as inference serves them."""
    return reading_features(segment.rows, profile, spec, pad=True).astype(np.float32).astype(np.float64)


def stack(
    segments: Sequence[Segment], profile: EquipmentProfile, spec: FeatureSpec, held: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, segment index per row) of the fitted (held=False) or held-out readings."""
    xs, ys, us = [], [], []
    for i, seg in enumerate(segments):
        mask = seg.held if held else ~seg.held
        if mask.any():
            xs.append(segment_features(seg, profile, spec)[mask])
            ys.append(seg.labels[mask])
            us.append(np.full(int(mask.sum()), i, dtype=np.int64))
    if not xs:
        return np.empty((0, len(feature_names(profile)))), np.empty(0), np.empty(0, dtype=np.int64)
    return np.vstack(xs), np.concatenate(ys), np.concatenate(us)


def log_loss(y: np.ndarray, probability: np.ndarray) -> float:
    p = np.clip(np.asarray(probability, dtype=np.float64), 1e-15, 1 - 1e-15)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def type_recall(segments: Sequence[Segment], probability: np.ndarray, threshold: float) -> dict[str, float]:
    """Of the held-out failures of each type (where the data name types), the share alerted on."""
    held_types = [t for seg in segments if seg.types for t, h in zip(seg.types, seg.held, strict=True) if h]
    held_labels = np.concatenate([seg.labels[seg.held] for seg in segments]) if segments else np.empty(0)
    if len(held_types) != len(held_labels):
        return {}  # some segments without types: no per-type numbers
    out: dict[str, float] = {}
    for kind in ai4i.FAILURE_TYPES:
        rows = [i for i, (t, y) in enumerate(zip(held_types, held_labels, strict=True)) if y and kind in t]
        if rows:
            out[f"failures_{kind}"] = float(len(rows))
            out[f"recall_{kind}"] = float(np.mean(probability[rows] >= threshold))
    return out


def warning_probability(profile: EquipmentProfile) -> float:
    t = profile.thresholds
    if not isinstance(t, ProbabilityThresholds):
        raise ValueError(f"profile {profile.name!r} does not judge a failure probability")
    return t.warning_probability


class FailureTrainer:
    kind: Final = "failure"
    rule: Final = FAILURE_RULE

    def __init__(self, ai4i_file: Path = ai4i.DEFAULT_FILE) -> None:
        self.ai4i_file = ai4i_file

    def dataset(self, request: TrainRequest, profile: EquipmentProfile) -> KindData:
        name = request.dataset or AI4I_DATASET
        if name != AI4I_DATASET:
            raise ValueError(f"a failure model trains on {AI4I_DATASET}, not {name}")
        columns = reading_columns(profile)
        data = ai4i.load(self.ai4i_file)
        missing = [c for c in columns if c not in data.values]
        if missing:
            raise ValueError(f"{AI4I_DATASET} has no {', '.join(missing)}: not {profile.name!r} data")
        n = len(data.seq)
        held = np.zeros(n, dtype=bool)
        held[temporal_split(n)[1]] = True
        segment = Segment(
            AI4I_DATASET, data.rows(columns), data.failed.astype(np.float64), held, tuple(data.types)
        )
        # The file's lives as `vigil import ai4i` archives them: a failure ends each.
        failures = int(data.failed.sum())
        keys = [life_key(AI4I_MACHINE, life, life < failures) for life in range(failures + 1)]
        rule = f"the last {HELD_OUT_FRACTION:.0%} of the readings are held out; {NEEDS}"
        return self._data([segment], keys, rule, [])

    def archive(self, lives: Sequence[Life], profile: EquipmentProfile) -> KindData:
        columns = reading_columns(profile)
        segments: list[Segment] = []
        skipped: list[str] = []
        for life in lives:
            if life.readings.profile != profile.name:
                continue
            rows = life.readings.matrix(list(columns))
            failed = life.failed and life.end_seq == int(life.readings.seq[-1])
            key = life_key(life.equipment_id, life.number, failed)
            if np.isnan(rows).any():
                skipped.append(f"{key}: readings without some of {', '.join(columns)}")
                continue
            labels = np.zeros(len(rows))
            if failed:
                labels[-1] = 1.0
            held = np.full(len(rows), is_held_out(life.equipment_id, life.number))
            segments.append(Segment(key, rows, labels, held))
        if not any(seg.labels.any() for seg in segments):
            raise NoNewData(
                f"no failure of a {profile.name} machine in the archive: record failures with POST "
                "/v1/equipment/{id}/events, or import history with `vigil import ai4i`"
            )
        rule = f"one life in {HELD_OUT_EVERY} is held out; {NEEDS}"
        return self._data(segments, [s.key for s in segments], rule, skipped)

    @staticmethod
    def _data(segments: list[Segment], keys: list[str], rule: str, skipped: list[str]) -> KindData:
        fit_failures = sum(int(s.labels[~s.held].sum()) for s in segments)
        held_failures = sum(int(s.labels[s.held].sum()) for s in segments)
        # Too few failures on a side is as unusable as no readings there: check_usable says so.
        n_fit = sum(int((~s.held).sum()) for s in segments) if fit_failures >= MIN_FIT_FAILURES else 0
        n_held = sum(int(s.held.sum()) for s in segments) if held_failures >= 1 else 0
        fingerprint = fingerprint_units(
            {i: np.column_stack([s.rows, s.labels]) for i, s in enumerate(segments)}
        )
        failures = [k for k in keys if not k.endswith(NO_FAILURE)]  # what a retrain needs more of
        return KindData(segments, segments, keys, fingerprint, n_fit, n_held, rule, skipped, failures)

    def fit(
        self,
        profile: EquipmentProfile,
        data: KindData,
        version: int,
        params: Mapping[str, Any],
        report: Progress,
    ) -> tuple[ModelCard, bytes]:
        report("features of every reading", 0.02)
        spec = FeatureSpec(window=profile.window)
        segments: list[Segment] = data.fit
        X, y, units = stack(segments, profile, spec, held=False)
        merged = {**BASE_PARAMS, **params}
        report(f"fitting gradient boosting ({merged['n_estimators']} trees), calibrating (3 folds)", 0.1)
        # Age (readings since the life, or the file, began) is held constant, so no tree splits on it:
        # AI4I's row number says nothing of a failure, and a machine's readings must be judged the
        # same whenever its life (or the replay) started.
        X_fit = X.copy()
        X_fit[:, feature_names(profile).index(AGE_FEATURE)] = 0.0
        model = train_failure_model(X_fit, y, dict(params))
        report("exporting to ONNX", 0.8)
        onnx_bytes = export_failure_onnx(model, X.shape[1])
        report("checking ONNX against scikit-learn on the held-out readings", 0.85)
        X_held, _, _ = stack(segments, profile, spec, held=True)
        diff = check_onnx_matches(_Probability(model), onnx_bytes, X_held)
        report("scoring held-out readings", 0.9)
        metrics = _metrics(segments, onnx_predict(onnx_bytes, X_held), profile)
        names = feature_names(profile)
        card = make_model_card(
            name=profile.model_name,
            version=version,
            profile=profile,
            training_set=TrainingSet(X, y, units, names, data.fingerprint),
            metrics=metrics,
            onnx_bytes=onnx_bytes,
            rul_cap=None,
            params=merged,
            onnx_max_abs_diff=diff,
            features=spec,
        )
        # the age is named unused: drift leaves it out (machines age, and the model never looks)
        update = {
            "feature_reference": reference(X, names),
            "kind": self.kind,
            "unused_features": [AGE_FEATURE],
        }
        card = card.model_copy(update=update)
        return card, onnx_bytes

    def evaluate(
        self, onnx: bytes, card: ModelCard, data: KindData, profile: EquipmentProfile
    ) -> dict[str, float]:
        spec = card.features or FeatureSpec(window=profile.window)
        X_held, _, _ = stack(data.held_out, profile, spec, held=True)
        return _metrics(data.held_out, onnx_predict(onnx, X_held), profile)


class _Probability:
    """The calibrated classifier's P(failure) as `.predict`, what check_onnx_matches compares."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, X: np.ndarray) -> np.ndarray:
        return predict_probability(self.model, X)


def _metrics(
    segments: Sequence[Segment], probability: np.ndarray, profile: EquipmentProfile
) -> dict[str, float]:
    y = np.concatenate([s.labels[s.held] for s in segments])
    threshold = warning_probability(profile)
    metrics = failure_metrics(y, probability, threshold)
    metrics["log_loss"] = log_loss(y, probability)
    metrics["brier"] = float(np.mean((probability - y) ** 2))
    metrics["threshold"] = threshold
    metrics["alert_rate"] = float(np.mean(probability >= threshold))
    metrics.update(type_recall(segments, probability, threshold))
    return {k: (v if math.isfinite(v) else 0.0) for k, v in metrics.items()}
