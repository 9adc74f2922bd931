"""What every model kind's training shares (transport-free): training sets, ONNX Runtime parity, scores,
model cards.

Each kind fits its own estimator (`rul`: apps/training/quality.py, `failure`: failure.py, `anomaly`:
anomaly.py), exports it to ONNX and must pass `check_onnx_matches` before it is registered; the card
records what inference and the actor need to serve it exactly as it was trained.
"""

from __future__ import annotations

import hashlib
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from typing import Any, Final, Protocol

import numpy as np

from apps.common.contracts import ModelCard
from apps.common.features import FeatureSpec
from apps.common.profiles import EquipmentProfile

ProgressCallback = Callable[[str, float], None]  # (stage message, fraction done 0..1)

ONNX_INPUT_NAME: Final = "features"
ONNX_TOLERANCE: Final = 1e-4
DEFAULT_RUL_CAP: Final = 125.0


class Predictor(Protocol):
    """Anything the ONNX export is checked against: scikit-learn, LightGBM, a probability column."""

    def predict(self, X: np.ndarray) -> np.ndarray: ...


class OnnxMismatch(RuntimeError):
    """ONNX Runtime disagrees with scikit-learn beyond tolerance: the export must not be registered."""


@dataclass(frozen=True, slots=True)
class TrainingSet:
    X: np.ndarray  # [rows, features], float64
    y: np.ndarray  # [rows], capped RUL
    units: np.ndarray  # [rows], source unit of each row (for grouped splits)
    feature_names: list[str]
    fingerprint: str  # sha256 over the raw trajectories used, in unit order


def fingerprint_units(units: Mapping[int, np.ndarray]) -> str:
    """sha256 of the trajectories (unit ids and float64 bytes, in unit order): same data, same hash."""
    h = hashlib.sha256()
    for unit in sorted(units):
        arr = np.ascontiguousarray(units[unit], dtype="<f8")
        h.update(f"{unit}:{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def onnx_predict(onnx_bytes: bytes, X: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    # One thread, as inference serves (InferenceSettings.intra_op_threads): ONNX Runtime then sums the
    # trees of every row in one order whatever the batch, so an evaluation scores bit for bit what the
    # actors get; with more threads the float32 sum of FD001's 500 trees moved by up to 2.3e-5.
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(onnx_bytes, sess_options=options, providers=["CPUExecutionProvider"])
    out = session.run(None, {ONNX_INPUT_NAME: np.asarray(X, dtype=np.float32)})[0]
    return np.asarray(out, dtype=np.float64).reshape(-1)


def check_onnx_matches(
    model: Predictor, onnx_bytes: bytes, X: np.ndarray, tolerance: float = ONNX_TOLERANCE
) -> float:
    """Max |ONNX - sklearn| over X; raises `OnnxMismatch` above `tolerance`.

    ONNX Runtime computes in float32, so sklearn is fed the same float32-rounded X: otherwise a value
    sitting between a split threshold's float32 and float64 forms would take a different branch and
    the check would measure input rounding rather than the export.
    """
    x32 = np.asarray(X, dtype=np.float32)
    expected = model.predict(x32.astype(np.float64))
    got = onnx_predict(onnx_bytes, x32)
    diff = float(np.max(np.abs(got - expected))) if len(expected) else 0.0
    if not diff <= tolerance:
        raise OnnxMismatch(f"ONNX differs from scikit-learn by {diff:.3g} (> {tolerance:g})")
    return diff


def phm08_score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """The PHM08 challenge score: late predictions (d > 0) cost more than early ones (d < 0)."""
    d = np.asarray(y_pred, dtype=np.float64) - np.asarray(y_true, dtype=np.float64)
    return float(np.sum(np.where(d < 0, np.exp(-d / 13.0) - 1.0, np.exp(d / 10.0) - 1.0)))


def framework_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in ("numpy", "scikit-learn", "lightgbm", "skl2onnx", "onnxmltools", "onnxruntime", "onnx"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "absent"
    return versions


def make_model_card(
    *,
    name: str,
    version: int,
    profile: EquipmentProfile,
    training_set: TrainingSet,
    metrics: Mapping[str, float],
    onnx_bytes: bytes,
    rul_cap: float | None,
    params: Mapping[str, Any] | None = None,
    onnx_max_abs_diff: float | None = None,
    created_at: datetime | None = None,
    features: FeatureSpec | None = None,
) -> ModelCard:
    simple = (int, float, str, type(None))  # the JSON-able ones; e.g. `init` may be an estimator
    kept = {k: v for k, v in (params or {}).items() if isinstance(v, simple)}
    return ModelCard(
        name=name,
        version=version,
        created_at=created_at or datetime.now(UTC),
        profile=profile.name,
        feature_names=list(training_set.feature_names),
        metrics=dict(metrics),
        training_data_fingerprint=training_set.fingerprint,
        rul_cap=rul_cap,
        n_train_rows=int(training_set.X.shape[0]),
        n_train_units=int(np.unique(training_set.units).size),
        params=kept,
        framework_versions=framework_versions(),
        onnx_sha256=hashlib.sha256(onnx_bytes).hexdigest(),
        onnx_max_abs_diff=onnx_max_abs_diff,
        features=features,
    )
