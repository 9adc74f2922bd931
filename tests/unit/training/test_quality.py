"""The every-unit RUL pipeline: padded rows, truncated runs for CV, LightGBM's ONNX equal to LightGBM."""

from __future__ import annotations

import numpy as np
import pytest

from apps.common import cmapss
from apps.common.profiles import TURBOFAN
from apps.training.quality import (
    build_padded_set,
    export_lightgbm,
    fit_spec,
    float32_thresholds,
    grouped_cv,
    last_features,
    lightgbm,
    rul_model,
    score,
    truncate_runs,
)
from apps.training.trainer import check_onnx_matches

TINY = {"n_estimators": 20, "num_leaves": 7}


@pytest.fixture(scope="module")
def few_units() -> dict[int, np.ndarray]:
    train = cmapss.load_train("FD002")
    return {u: train[u] for u in range(1, 10)}


def test_padded_set_has_a_row_per_reading_labelled_with_capped_rul(few_units: dict[int, np.ndarray]) -> None:
    ts = build_padded_set(few_units, TURBOFAN, fit_spec(few_units, TURBOFAN), 125.0)
    assert ts.X.shape[0] == sum(t.shape[0] for t in few_units.values())
    first = few_units[1].shape[0]
    assert ts.y[first - 1] == 0.0 and ts.y[0] == 125.0  # failure cycle, capped start
    assert np.array_equal(ts.X, ts.X.astype(np.float32))  # what inference serves: float32 values
    assert set(ts.units.tolist()) == set(few_units)


def test_every_unit_is_predicted_even_shorter_than_the_window(few_units: dict[int, np.ndarray]) -> None:
    short = {1: few_units[1][:5], 2: few_units[2][:1], 3: few_units[3]}
    ids, X = last_features(short, TURBOFAN, fit_spec(few_units, TURBOFAN))
    assert ids == [1, 2, 3] and np.isfinite(X).all()


def test_truncated_runs_keep_their_true_rul(few_units: dict[int, np.ndarray]) -> None:
    cut, truth = truncate_runs(few_units, per_unit=3, seed=1)
    assert len(cut) == 3 * len(few_units)
    for key, traj in cut.items():
        full = few_units[key // 3]
        assert 1 <= traj.shape[0] <= full.shape[0]
        assert truth[key] == full.shape[0] - traj.shape[0]
    assert truncate_runs(few_units, 3, 1)[1] == truth  # seeded: the same cuts every time


def test_score_caps_the_truth_and_counts_coverage() -> None:
    m = score(np.array([200.0, 10.0]), np.array([125.0, 10.0]), 125.0, n_units=4)
    assert m["rmse_capped"] == 0.0 and m["rmse"] == pytest.approx(75 / np.sqrt(2))
    assert m["coverage"] == 0.5


def test_lightgbm_onnx_matches_within_tolerance(few_units: dict[int, np.ndarray]) -> None:
    ts = build_padded_set(few_units, TURBOFAN, fit_spec(few_units, TURBOFAN), 125.0)
    model = lightgbm(TINY)
    model.fit(ts.X, ts.y)
    before = model.predict(ts.X)
    float32_thresholds(model)
    assert np.array_equal(model.predict(ts.X), before)  # float32 inputs take the same branches
    assert check_onnx_matches(model, export_lightgbm(model, ts.X.shape[1]), ts.X) <= 1e-4


def test_grouped_cv_scores_held_out_machines(few_units: dict[int, np.ndarray]) -> None:
    metrics = grouped_cv(few_units, TURBOFAN, lambda: lightgbm(TINY), normalise=True, folds=2, per_unit=2)
    assert metrics["coverage"] == 1.0
    assert 0 < metrics["rmse_capped"] < 125


def test_seed_average_is_the_mean_of_its_models_and_exports_as_one(few_units: dict[int, np.ndarray]) -> None:
    ts = build_padded_set(few_units, TURBOFAN, fit_spec(few_units, TURBOFAN), 125.0)
    rounds: list[int] = []
    model = rul_model({**TINY, "n_seeds": 3}).fit(ts.X, ts.y, rounds.append)
    assert rounds == list(range(1, 3 * TINY["n_estimators"] + 1)) and model.rounds == rounds[-1]
    singles = []
    for seed in (7, 8, 9):  # LGBM_PARAMS' random_state, then the next ones
        single = lightgbm({**TINY, "random_state": seed})
        single.fit(ts.X, ts.y)
        singles.append(single.predict(ts.X))
    np.testing.assert_allclose(model.predict(ts.X), np.mean(singles, axis=0), rtol=0, atol=1e-9)
    assert model.model_.n_estimators_ == 3 * TINY["n_estimators"]
    float32_thresholds(model.model_)
    onnx = export_lightgbm(model.model_, ts.X.shape[1])
    assert check_onnx_matches(model, onnx, ts.X) <= 1e-4
    assert model.get_params()["n_seeds"] == 3
