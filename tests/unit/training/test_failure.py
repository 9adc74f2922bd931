"""The failure model kind: padded features per reading, a temporal hold-out, one ONNX output = P(failure)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from apps.common.features import n_features
from apps.common.profiles import get_profile
from apps.training.failure import (
    PROBABILITY_OUTPUT,
    export_failure_onnx,
    failure_features,
    failure_metrics,
    predict_probability,
    temporal_split,
    train_failure_model,
)
from apps.training.trainer import check_onnx_matches, onnx_predict

MILLING = get_profile("milling")


@pytest.fixture(scope="module")
def readings() -> tuple[np.ndarray, np.ndarray]:
    """A synthetic mill: failures when torque x wear is high (AI4I's overstrain mode), ~10% of rows."""
    rng = np.random.default_rng(3)
    n = 600
    r = np.column_stack(
        [
            rng.normal(300, 2, n),
            rng.normal(310, 1.5, n),
            rng.normal(1500, 150, n),
            rng.normal(40, 10, n),
            rng.uniform(0, 250, n),
        ]
    )
    y = (r[:, 3] * r[:, 4] > np.quantile(r[:, 3] * r[:, 4], 0.9)).astype(np.float64)
    return r, y


def test_every_reading_has_features_in_float32_precision(readings: tuple[np.ndarray, np.ndarray]) -> None:
    X = failure_features(readings[0], MILLING)
    assert X.shape == (600, n_features(MILLING))
    assert np.array_equal(X, X.astype(np.float32))


def test_temporal_split_holds_out_the_last_readings() -> None:
    assert temporal_split(10, 0.2) == (slice(0, 8), slice(8, 10))


def test_calibrated_model_separates_and_exports_a_single_probability(
    readings: tuple[np.ndarray, np.ndarray],
) -> None:
    X = failure_features(readings[0], MILLING)
    y = readings[1]
    fit, held = temporal_split(len(y))
    model = train_failure_model(X[fit], y[fit], {"n_estimators": 20})
    probability = predict_probability(model, X[held])
    assert ((probability >= 0) & (probability <= 1)).all()
    metrics = failure_metrics(y[held], probability, 0.5)
    assert metrics["roc_auc"] > 0.8 and metrics["rows"] == len(probability)
    onnx_bytes = export_failure_onnx(model, X.shape[1])
    outputs = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"]).get_outputs()
    assert [o.name for o in outputs] == [PROBABILITY_OUTPUT]
    assert np.max(np.abs(onnx_predict(onnx_bytes, X[held]) - probability)) <= 1e-4

    class Probability:  # check_onnx_matches compares against `.predict`
        def predict(self, rows: np.ndarray) -> np.ndarray:
            return predict_probability(model, rows)

    assert check_onnx_matches(Probability(), onnx_bytes, X) <= 1e-4
