"""The prediction request the actor sends (written by orjson, not by building a PredictRequest) is the
PredictRequest inference expects; the owed features are checked finite where they are computed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from apps.common.contracts import PredictRequest
from apps.common.features import FeatureSpec
from apps.common.profiles import TURBOFAN
from apps.equipment.backlog import PredictionBacklog
from apps.equipment.ports import predict_body


def a_backlog(rows: np.ndarray) -> PredictionBacklog:
    backlog = PredictionBacklog(TURBOFAN)
    n = len(rows) - TURBOFAN.window + 1
    backlog.add(rows, list(range(1, n + 1)), [1000.0 + i for i in range(n)], 1.0)
    return backlog


def rows(n: int, seed: int = 3) -> np.ndarray:
    columns = len(TURBOFAN.informative_sensors) + len(TURBOFAN.operating_settings)
    return np.random.default_rng(seed).normal(100.0, 5.0, (n, columns))


def test_the_body_is_the_predict_request_of_the_features() -> None:
    features = a_backlog(rows(TURBOFAN.window + 4)).features("m-1", 100, FeatureSpec(window=TURBOFAN.window))
    assert len(features) == 5
    body = predict_body("turbofan-rul", features, 3)
    expected = PredictRequest(
        model_name="turbofan-rul",
        feature_names=features[0].feature_names,
        rows=[f.values for f in features],
        model_version=3,
    )
    assert PredictRequest.model_validate_json(body) == expected
    assert json.loads(body) == json.loads(expected.model_dump_json())


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on the inf, before the check
def test_owed_features_are_checked_finite_and_the_window_named() -> None:
    bad = rows(TURBOFAN.window + 2)
    bad[-1, 0] = np.inf  # the last window's newest reading
    with pytest.raises(ValueError, match=r"window ending at seq 3 is not finite"):
        a_backlog(bad).features("m-1", 100, FeatureSpec(window=TURBOFAN.window))
