"""Training core on a few real C-MAPSS units: the same features, and ONNX equal to scikit-learn."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingRegressor

from apps.common import cmapss
from apps.common.features import feature_names, online_features
from apps.common.profiles import TURBOFAN
from apps.training.trainer import (
    OnnxMismatch,
    TrainingSet,
    build_training_set,
    check_onnx_matches,
    evaluate,
    export_onnx,
    last_window_features,
    make_model_card,
    onnx_predict,
    phm08_score,
    run_training,
    train_model,
)

SMALL = {"n_estimators": 40, "max_depth": 3}


@pytest.fixture(scope="module")
def few_units() -> dict[int, np.ndarray]:
    train = cmapss.load_train()
    return {u: train[u] for u in (1, 2, 3, 4, 5, 6, 7, 8)}


@pytest.fixture(scope="module")
def training_set(few_units: dict[int, np.ndarray]) -> TrainingSet:
    return build_training_set(few_units, TURBOFAN, rul_cap=125)


@pytest.fixture(scope="module")
def small_model(training_set: TrainingSet) -> GradientBoostingRegressor:
    return train_model(training_set.X, training_set.y, SMALL)


def test_training_set_rows_labels_and_features(
    few_units: dict[int, np.ndarray], training_set: TrainingSet
) -> None:
    w = TURBOFAN.window
    assert training_set.X.shape == (
        sum(t.shape[0] - w + 1 for t in few_units.values()),
        len(feature_names(TURBOFAN)),
    )
    assert training_set.feature_names == feature_names(TURBOFAN)
    # Unit 1's rows: labels count down to 0 at failure and are capped at 125.
    rows = training_set.units == 1
    y1 = training_set.y[rows]
    assert y1[-1] == 0 and y1.max() == 125 and np.all(np.diff(y1) <= 0)
    # A training row is exactly what the actor computes online for the same window.
    traj = few_units[1]
    sensors = cmapss.sensor_matrix(traj, TURBOFAN)
    i = 50
    online = online_features(sensors[i : i + w], traj[i + w - 1, 1], TURBOFAN)
    np.testing.assert_allclose(training_set.X[rows][i], online, rtol=0, atol=1e-9)


def test_fingerprint_depends_on_the_data(few_units: dict[int, np.ndarray], training_set: TrainingSet) -> None:
    again = build_training_set(dict(few_units), TURBOFAN)
    assert again.fingerprint == training_set.fingerprint and len(again.fingerprint) == 64
    changed = dict(few_units)
    changed[1] = few_units[1].copy()
    changed[1][0, 5] += 0.01
    assert build_training_set(changed, TURBOFAN).fingerprint != training_set.fingerprint


def test_onnx_matches_sklearn(small_model: GradientBoostingRegressor, training_set: TrainingSet) -> None:
    onnx_bytes = export_onnx(small_model, training_set.X.shape[1])
    diff = check_onnx_matches(small_model, onnx_bytes, training_set.X)
    assert 0 <= diff <= 1e-4
    # ...and also on inputs away from the training rows (test units).
    _, X_test = _test_features()
    assert check_onnx_matches(small_model, onnx_bytes, X_test) <= 1e-4


def test_onnx_check_catches_a_different_model(
    training_set: TrainingSet, small_model: GradientBoostingRegressor
) -> None:
    other = train_model(training_set.X, training_set.y, {**SMALL, "n_estimators": 5})
    with pytest.raises(OnnxMismatch):
        check_onnx_matches(small_model, export_onnx(other, training_set.X.shape[1]), training_set.X)


def _test_features() -> tuple[list[int], np.ndarray]:
    return last_window_features(cmapss.load_test(), TURBOFAN)


def test_small_model_learns_something(small_model: GradientBoostingRegressor) -> None:
    metrics = evaluate(small_model.predict, cmapss.load_test(), cmapss.load_rul(), TURBOFAN)
    assert metrics["n_test_units"] == 100 and metrics["coverage"] == 1.0
    # Predicting the mean test RUL for every unit gives ~41 RMSE; 8 units and 40 trees must beat it.
    assert metrics["rmse"] < 30
    assert set(metrics) >= {"rmse", "mae", "phm08_score", "rmse_capped"}


def test_phm08_score_penalises_late_more_than_early() -> None:
    assert phm08_score(np.array([50.0]), np.array([50.0])) == 0.0
    late = phm08_score(np.array([50.0]), np.array([60.0]))
    early = phm08_score(np.array([50.0]), np.array([40.0]))
    assert late == pytest.approx(math.e - 1) and early == pytest.approx(math.exp(10 / 13) - 1)
    assert late > early


def test_progress_is_reported_and_monotonic(training_set: TrainingSet) -> None:
    seen: list[float] = []
    train_model(
        training_set.X[:500], training_set.y[:500], {"n_estimators": 20}, lambda _s, f: seen.append(f)
    )
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert seen == sorted(seen)


def test_model_card(small_model: GradientBoostingRegressor, training_set: TrainingSet) -> None:
    onnx_bytes = export_onnx(small_model, training_set.X.shape[1])
    card = make_model_card(
        name="turbofan-rul",
        version=1,
        profile=TURBOFAN,
        training_set=training_set,
        metrics={"rmse": 20.0},
        onnx_bytes=onnx_bytes,
        rul_cap=125,
        model=small_model,
    )
    assert card.onnx_sha256 == hashlib.sha256(onnx_bytes).hexdigest()
    assert card.n_train_units == 8 and card.n_train_rows == training_set.X.shape[0]
    assert card.params["n_estimators"] == 40
    assert {"numpy", "scikit-learn", "onnxruntime", "skl2onnx"} <= set(card.framework_versions)
    assert card.created_at.tzinfo is not None
    assert type(card).model_validate_json(card.model_dump_json()) == card


def test_coverage_counts_units_too_short_for_a_window(small_model: GradientBoostingRegressor) -> None:
    test = cmapss.load_test()
    short = {1: test[1][:10], 2: test[2]}  # unit 1 has 10 of the 30 readings a window needs
    metrics = evaluate(small_model.predict, short, cmapss.load_rul(), TURBOFAN)
    assert metrics["n_test_units"] == 1 and metrics["coverage"] == 0.5


def test_run_training_end_to_end_small(few_units: dict[int, np.ndarray]) -> None:
    stages: list[str] = []
    out = run_training(
        profile=TURBOFAN,
        train_units=few_units,
        test_units=cmapss.load_test(),
        true_rul=cmapss.load_rul(),
        version=2,
        params={"n_estimators": 20},
        progress=lambda s, _f: stages.append(s),
    )
    assert out.card.version == 2 and out.card.name == TURBOFAN.model_name
    assert out.card.onnx_max_abs_diff is not None and out.card.onnx_max_abs_diff <= 1e-4
    assert stages[-1] == "done"
    X = build_training_set(few_units, TURBOFAN).X[:10]
    np.testing.assert_allclose(
        onnx_predict(out.onnx_bytes, X), out.model.predict(X.astype(np.float32)), atol=1e-3
    )
