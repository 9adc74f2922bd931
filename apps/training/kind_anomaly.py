"""The `anomaly` model kind: no labels needed, so a fleet without failure history is covered from day one.

An isolation forest (anomaly.py's, exported to ONNX with one output, the score; refused unless ONNX
Runtime matches scikit-learn within 1e-4 on the held-out windows) learns the healthy early life of
each machine: the first quarter of every life's readings, at least two windows' worth. One machine (or
life) in five is held out (by id, as runs.is_held_out); the score its healthy windows exceed at the
profile's false-alarm rate is the warning threshold, at its critical rate the critical one. Both go in
the card (`alert_thresholds`), where the actors read them. The age feature is held constant while
fitting, so no tree splits on it: a healthy machine does not become an anomaly by growing old.

Data: source `dataset` is a C-MAPSS training file (for a profile with its channels); source `archive`
is every life of the profile's machines, ended or running (events only cut lives). The gate scores
candidate and champion on the held-out lives: `separation_error` (1 - ROC-AUC of healthy early windows
against the last quarter of held-out runs that ended in a failure) lower by the margin. Without such a
run held out it is 1.0 for both, so only a first version, or `force`, is promoted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

from apps.common.contracts import ModelCard, TrainRequest
from apps.common.features import (
    AGE_FEATURE,
    FeatureSpec,
    OperatingConditions,
    feature_names,
    reading_columns,
    reading_features,
)
from apps.common.profiles import AnomalyThresholds, EquipmentProfile
from apps.training.anomaly import HEALTHY_FRACTION, AnomalyModel, export_anomaly_onnx
from apps.training.drift import reference
from apps.training.history import Life
from apps.training.kind_rul import cmapss_units
from apps.training.kinds import KindData, NoNewData, Progress
from apps.training.promotion import GateRule
from apps.training.quality import reading_rows
from apps.training.runs import HELD_OUT_EVERY, is_held_out, run_key
from apps.training.trainer import (
    TrainingSet,
    check_onnx_matches,
    fingerprint_units,
    make_model_card,
    onnx_predict,
)

ANOMALY_RULE: Final = GateRule("separation_error", "separation error", True, digits=4)
LATE_FRACTION: Final = 0.25  # the last quarter of a run to failure counts as degraded for the gate
BASE_PARAMS: Final[dict[str, Any]] = {"n_estimators": 100, "random_state": 7}


@dataclass(frozen=True, slots=True)
class LifeRows:
    """One machine's life as reading rows (informative sensors, then operating settings)."""

    key: str
    rows: np.ndarray
    held: bool
    failed: bool  # ran to a failure: its last quarter is degraded (the gate's positives)


def healthy_count(n: int, window: int) -> int:
    """How many of a life's first readings count as healthy: a quarter, at least two windows."""
    return min(n, max(math.ceil(n * HEALTHY_FRACTION), 2 * window))


def ready_lives(lives: Sequence[LifeRows], window: int) -> list[str]:
    """The lives with a healthy early life to learn from: at least the two windows `healthy_count`
    takes as healthy (a machine that just started has not shown its normal yet)."""
    return [life.key for life in lives if len(life.rows) >= 2 * window]


def thresholds(profile: EquipmentProfile) -> AnomalyThresholds:
    t = profile.thresholds
    if not isinstance(t, AnomalyThresholds):
        raise ValueError(f"profile {profile.name!r} does not judge an anomaly score")
    return t


def fit_spec(lives: Sequence[LifeRows], profile: EquipmentProfile) -> FeatureSpec:
    """The profile's window; with operating settings, per-condition normalisation fitted on the healthy
    readings of the fitted lives (what 'normal' is in each condition)."""
    if not profile.operating_settings:
        return FeatureSpec(window=profile.window)
    rows = np.vstack([life.rows[: healthy_count(len(life.rows), profile.window)] for life in lives])
    s = len(profile.informative_sensors)
    spans = np.array([hi - lo for lo, hi in (profile.channels[c] for c in profile.operating_settings)])
    return FeatureSpec(
        window=profile.window, conditions=OperatingConditions.fit(rows[:, s:], rows[:, :s], spans)
    )


def life_features(life: LifeRows, profile: EquipmentProfile, spec: FeatureSpec) -> np.ndarray:
    """Features at every reading, ages from the life's start, as the actor computes them (float32)."""
    return reading_features(life.rows, profile, spec, pad=True).astype(np.float32).astype(np.float64)


def split_rows(
    lives: Sequence[LifeRows], profile: EquipmentProfile, spec: FeatureSpec, held: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(healthy early windows, late windows of runs to failure) of the held-out or fitted lives."""
    healthy, late = [], []
    width = len(feature_names(profile))
    for life in lives:
        if life.held != held:
            continue
        X = life_features(life, profile, spec)
        healthy.append(X[: healthy_count(len(X), profile.window)])
        if life.failed:
            late.append(X[len(X) - max(1, math.ceil(len(X) * LATE_FRACTION)) :])
    return _stack(healthy, width), _stack(late, width)


def _stack(parts: list[np.ndarray], width: int) -> np.ndarray:
    return np.vstack(parts) if parts else np.empty((0, width))


def score_metrics(healthy: np.ndarray, late: np.ndarray, warning: float) -> dict[str, float]:
    """False-alarm rate on healthy windows, detection rate and separation on late ones (scores)."""
    out = {"false_alarm_rate": float(np.mean(healthy > warning)), "healthy_windows": float(len(healthy))}
    if len(late):
        labels = np.concatenate([np.zeros(len(healthy)), np.ones(len(late))])
        auc = float(roc_auc_score(labels, np.concatenate([healthy, late])))
        out.update(separation_error=1.0 - auc, detection_rate=float(np.mean(late > warning)))
        out["late_windows"] = float(len(late))
    else:
        out["separation_error"] = 1.0  # unknown: no held-out run to failure to tell
    return out


class AnomalyTrainer:
    kind: Final = "anomaly"
    rule: Final = ANOMALY_RULE

    def dataset(self, request: TrainRequest, profile: EquipmentProfile) -> KindData:
        subset, units = cmapss_units(request, profile)
        lives = [
            LifeRows(f"{subset.lower()}-{u:03d}#0", reading_rows(t, profile), u % HELD_OUT_EVERY == 0, True)
            for u, t in sorted(units.items())
        ]
        return self._data(lives, [], profile.window)

    def archive(self, lives: Sequence[Life], profile: EquipmentProfile) -> KindData:
        columns = list(reading_columns(profile))
        found: list[LifeRows] = []
        skipped: list[str] = []
        for life in lives:
            if life.readings.profile != profile.name:
                continue
            key = run_key(life.equipment_id, life.number)
            rows = life.readings.matrix(columns)
            if np.isnan(rows).any():
                skipped.append(f"{key}: readings without some of {', '.join(columns)}")
                continue
            found.append(LifeRows(key, rows, is_held_out(life.equipment_id, life.number), life.failed))
        if not found:
            raise NoNewData(f"no readings of a {profile.name} machine in the archive yet")
        return self._data(found, skipped, profile.window)

    @staticmethod
    def _data(lives: list[LifeRows], skipped: list[str], window: int) -> KindData:
        fingerprint = fingerprint_units({i: life.rows for i, life in enumerate(lives)})
        n_fit, n_held = sum(not life.held for life in lives), sum(life.held for life in lives)
        rule = f"one machine in {HELD_OUT_EVERY} is held out: its healthy windows set the threshold"
        keys = [life.key for life in lives]
        return KindData(
            lives, lives, keys, fingerprint, n_fit, n_held, rule, skipped, ready_lives(lives, window)
        )

    def fit(
        self,
        profile: EquipmentProfile,
        data: KindData,
        version: int,
        params: Mapping[str, Any],
        report: Progress,
    ) -> tuple[ModelCard, bytes]:
        settings = thresholds(profile)
        lives: list[LifeRows] = data.fit
        report("operating conditions and healthy early-life windows", 0.02)
        spec = fit_spec([life for life in lives if not life.held], profile)
        X, _ = split_rows(lives, profile, spec, held=False)
        names = feature_names(profile)
        X_fit = X.copy()
        X_fit[:, names.index(AGE_FEATURE)] = 0.0  # constant: never split on, so age is no anomaly
        merged = {**BASE_PARAMS, **params}
        report(f"fitting an isolation forest ({merged['n_estimators']} trees)", 0.1)
        forest = IsolationForest(**merged).fit(X_fit)
        healthy, late = split_rows(lives, profile, spec, held=True)
        draft = AnomalyModel(forest, 0.0, 0.0)
        report("exporting to ONNX", 0.6)
        onnx_bytes = export_anomaly_onnx(draft, X.shape[1])
        report("checking ONNX against scikit-learn on the held-out windows", 0.7)
        diff = check_onnx_matches(draft, onnx_bytes, np.vstack([healthy, late]))
        report("thresholds at the false-alarm rates on held-out healthy windows", 0.85)
        # From ONNX's scores: the thresholds are compared with what inference serves.
        scores = onnx_predict(onnx_bytes, healthy)
        learned = {
            "warning": float(np.quantile(scores, 1.0 - settings.false_alarm_rate, method="higher")),
            "critical": float(np.quantile(scores, 1.0 - settings.critical_false_alarm_rate, method="higher")),
        }
        metrics = score_metrics(scores, onnx_predict(onnx_bytes, late), learned["warning"])
        metrics.update(threshold=learned["warning"], critical_threshold=learned["critical"])
        metrics["target_false_alarm_rate"] = settings.false_alarm_rate
        card = make_model_card(
            name=profile.model_name,
            version=version,
            profile=profile,
            training_set=TrainingSet(
                X, np.zeros(len(X)), np.zeros(len(X), dtype=np.int64), names, data.fingerprint
            ),
            metrics=metrics,
            onnx_bytes=onnx_bytes,
            rul_cap=None,
            params=merged,
            onnx_max_abs_diff=diff,
            features=spec,
        )
        card = card.model_copy(
            update={
                "feature_reference": reference(X, names),
                "alert_thresholds": learned,
                "kind": self.kind,
                "unused_features": [AGE_FEATURE],  # held constant above: drift leaves it out
                "n_train_units": data.n_fit,
            }
        )
        return card, onnx_bytes

    def evaluate(
        self, onnx: bytes, card: ModelCard, data: KindData, profile: EquipmentProfile
    ) -> dict[str, float]:
        spec = card.features or FeatureSpec(window=profile.window)
        healthy, late = split_rows(data.held_out, profile, spec, held=True)
        warning = (card.alert_thresholds or {}).get("warning", math.inf)
        return score_metrics(onnx_predict(onnx, healthy), onnx_predict(onnx, late), warning)
