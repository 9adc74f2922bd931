"""The `failure` model kind: a calibrated probability that a reading ends in a failure (AI4I milling).

Features are the shared pipeline's, padded so every reading has a window. The held-out split is
temporal (the last readings of the machine), since neighbouring readings share windows and a random
split would leak them. The exported ONNX model has one output, the failure probability, so inference
serves it exactly like a RUL.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.metrics import f1_score, roc_auc_score

from apps.common.features import offline_features
from apps.common.profiles import EquipmentProfile
from apps.training.trainer import ONNX_INPUT_NAME

HELD_OUT_FRACTION: Final = 0.2
PROBABILITY_OUTPUT: Final = "probability"
BASE_PARAMS: Final[dict[str, Any]] = {
    "n_estimators": 150,
    "max_depth": 3,
    "learning_rate": 0.1,
    "subsample": 0.8,
    "random_state": 7,
}


def failure_features(readings: np.ndarray, profile: EquipmentProfile) -> np.ndarray:
    """Features at every reading of one machine ([n, S] informative sensors in profile order)."""
    return offline_features(readings, profile, pad=True).astype(np.float32).astype(np.float64)


def temporal_split(n: int, fraction: float = HELD_OUT_FRACTION) -> tuple[slice, slice]:
    cut = n - math.ceil(n * fraction)
    return slice(0, cut), slice(cut, n)


def train_failure_model(X: np.ndarray, y: np.ndarray, params: dict[str, Any] | None = None) -> Any:
    """Gradient boosting, probabilities calibrated by Platt scaling over 3 folds (failures are ~3%)."""
    base = GradientBoostingClassifier(**{**BASE_PARAMS, **(params or {})})
    return CalibratedClassifierCV(base, method="sigmoid", cv=3).fit(X, y.astype(np.int64))


def failure_metrics(y: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, float]:
    """ROC-AUC, and F1 at the profile's warning probability (the point where operators see an alert)."""
    labels = y.astype(np.int64)
    return {
        "roc_auc": float(roc_auc_score(labels, probability)),
        "f1": float(f1_score(labels, probability >= threshold)),
        "positives": float(labels.sum()),
        "rows": float(labels.size),
    }


def predict_probability(model: Any, X: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict_proba(X)[:, 1], dtype=np.float64)


def export_failure_onnx(model: Any, n_features: int) -> bytes:
    """ONNX whose only output is P(failure), shape [batch, 1]: the classifier's column 1."""
    import onnx
    from onnx import TensorProto, helper
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    onx = convert_sklearn(
        model,
        initial_types=[(ONNX_INPUT_NAME, FloatTensorType([None, n_features]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
        options={id(model): {"zipmap": False}},
    )
    graph = onx.graph
    probabilities = graph.output[1].name  # [label, probabilities]
    graph.initializer.append(helper.make_tensor("failure_class", TensorProto.INT64, [1], [1]))
    graph.node.append(
        helper.make_node("Gather", [probabilities, "failure_class"], [PROBABILITY_OUTPUT], axis=1)
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(PROBABILITY_OUTPUT, TensorProto.FLOAT, [None, 1]))
    onnx.checker.check_model(onx)
    return onx.SerializeToString()
