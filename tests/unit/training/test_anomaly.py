"""The anomaly model kind: fitted on healthy early life, thresholded on held-out machines, one ONNX score."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from apps.common import cmapss
from apps.common.features import FeatureSpec
from apps.common.profiles import TURBOFAN
from apps.training.anomaly import SCORE_OUTPUT, export_anomaly_onnx, healthy_rows, train_anomaly_model
from apps.training.quality import unit_features
from apps.training.trainer import check_onnx_matches, onnx_predict

RAW = FeatureSpec(window=TURBOFAN.window)  # FD001 flies one condition: raw sensors


@pytest.fixture(scope="module")
def features() -> dict[int, np.ndarray]:
    train = cmapss.load_train()
    return {
        u: unit_features(train[u], TURBOFAN, RAW).astype(np.float32).astype(np.float64) for u in range(1, 13)
    }


def test_healthy_rows_are_each_machines_first_quarter(features: dict[int, np.ndarray]) -> None:
    rows = healthy_rows({1: features[1], 2: features[2]})
    n1, n2 = features[1].shape[0] // 4, features[2].shape[0] // 4
    assert np.array_equal(rows, np.vstack([features[1][:n1], features[2][:n2]]))


def test_threshold_meets_the_false_alarm_rate_and_end_of_life_scores_higher(
    features: dict[int, np.ndarray],
) -> None:
    model = train_anomaly_model(
        features, held_out={10, 11, 12}, false_alarm_rate=0.05, params={"n_estimators": 30}
    )
    assert model.false_alarm_rate <= 0.05
    for unit in (10, 11, 12):  # unseen machines: their last cycles look less healthy than their first
        scores = model.predict(features[unit])
        assert scores[-10:].mean() > scores[:10].mean()
    onnx_bytes = export_anomaly_onnx(model, features[1].shape[1])
    outputs = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"]).get_outputs()
    assert [o.name for o in outputs] == [SCORE_OUTPUT]
    assert check_onnx_matches(model, onnx_bytes, features[10]) <= 1e-4
    assert onnx_predict(onnx_bytes, features[10]).shape == (features[10].shape[0],)
