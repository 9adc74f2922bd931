"""The RUL training job on a few real C-MAPSS units: the shared pipeline's rows, ONNX equal to LightGBM,
metrics on held-out machines only, and a card that carries the feature spec the actor must apply."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from apps.common import cmapss
from apps.common.features import feature_names
from apps.common.profiles import TURBOFAN
from apps.training.quality import (
    FEATURE_STATISTICS,
    TrainingOutcome,
    build_padded_set,
    evaluate_onnx,
    export_lightgbm,
    fit_spec,
    lightgbm,
    run_training,
    unit_features,
)
from apps.training.trainer import OnnxMismatch, check_onnx_matches, onnx_predict, phm08_score

SMALL = {"n_estimators": 40, "num_leaves": 15}


@pytest.fixture(scope="module")
def fd002() -> dict[int, np.ndarray]:
    return cmapss.load_train("FD002")


@pytest.fixture(scope="module")
def outcome(fd002: dict[int, np.ndarray]) -> tuple[TrainingOutcome, list[tuple[str, float]]]:
    stages: list[tuple[str, float]] = []
    out = run_training(
        profile=TURBOFAN,
        train_units={u: fd002[u] for u in range(1, 13)},
        held_out={u: fd002[u] for u in (15, 20, 25)},
        version=2,
        params=SMALL,
        progress=lambda s, f: stages.append((s, f)),
    )
    return out, stages


def test_rows_are_the_shared_pipeline_at_every_reading(fd002: dict[int, np.ndarray]) -> None:
    units = {u: fd002[u] for u in (1, 2, 3)}
    spec = fit_spec(units, TURBOFAN)
    ts = build_padded_set(units, TURBOFAN, spec, 125.0)
    assert ts.X.shape == (sum(len(t) for t in units.values()), len(feature_names(TURBOFAN, spec)))
    assert spec.statistics == FEATURE_STATISTICS and len(ts.feature_names) > len(feature_names(TURBOFAN))
    first = unit_features(units[1], TURBOFAN, spec)
    assert np.array_equal(ts.X[: len(first)], first.astype(np.float32).astype(np.float64))
    assert ts.fingerprint == build_padded_set(dict(units), TURBOFAN, spec, 125.0).fingerprint
    changed = {**units, 3: units[3] + 1e-3}
    assert build_padded_set(changed, TURBOFAN, spec, 125.0).fingerprint != ts.fingerprint


def test_card_has_the_spec_the_held_out_metrics_and_the_versions(
    outcome: tuple[TrainingOutcome, list[tuple[str, float]]],
) -> None:
    out, _ = outcome
    card = out.card
    assert card.version == 2 and card.name == TURBOFAN.model_name
    assert card.features is not None and card.features.window == TURBOFAN.window
    assert card.features.conditions is not None and len(card.features.conditions.centres) == 6
    # scored on the held-out machines' truncated runs (5 cuts each), every one predicted
    assert card.metrics["coverage"] == 1.0 and 0 < card.metrics["rmse_capped"] < 60
    assert card.onnx_sha256 == hashlib.sha256(out.onnx_bytes).hexdigest()
    assert card.onnx_max_abs_diff is not None and card.onnx_max_abs_diff <= 1e-4
    assert card.n_train_units == 12 and card.params["n_estimators"] == 40
    assert {"lightgbm", "onnxmltools", "onnxruntime"} <= set(card.framework_versions)
    assert type(card).model_validate_json(card.model_dump_json()) == card


def test_progress_is_reported_and_monotonic(outcome: tuple[TrainingOutcome, list[tuple[str, float]]]) -> None:
    _, stages = outcome
    fractions = [f for _, f in stages]
    assert fractions[0] == 0.0 and stages[-1] == ("done", 1.0)
    assert fractions == sorted(fractions)
    assert any(s.startswith("boosting round") for s, _ in stages)


def test_evaluation_uses_each_cards_own_spec(
    fd002: dict[int, np.ndarray], outcome: tuple[TrainingOutcome, list[tuple[str, float]]]
) -> None:
    out, _ = outcome
    held = {u: fd002[u] for u in (15, 20, 25)}
    assert evaluate_onnx(out.onnx_bytes, out.card, held, TURBOFAN) == out.card.metrics
    assert out.card.features is not None
    raw = out.card.model_copy(update={"features": out.card.features.model_copy(update={"conditions": None})})
    # the same ONNX fed features without its conditions is a different (much worse) model
    assert evaluate_onnx(out.onnx_bytes, raw, held, TURBOFAN)["rmse_capped"] > out.card.metrics["rmse_capped"]


def test_onnx_check_catches_a_different_model(fd002: dict[int, np.ndarray]) -> None:
    units = {u: fd002[u] for u in (1, 2)}
    ts = build_padded_set(units, TURBOFAN, fit_spec(units, TURBOFAN), 125.0)
    a, b = lightgbm({"n_estimators": 10}), lightgbm({"n_estimators": 5})
    a.fit(ts.X, ts.y)
    b.fit(ts.X, ts.y)
    assert check_onnx_matches(a, export_lightgbm(a, ts.X.shape[1]), ts.X) <= 1e-4
    with pytest.raises(OnnxMismatch):
        check_onnx_matches(a, export_lightgbm(b, ts.X.shape[1]), ts.X)
    assert onnx_predict(export_lightgbm(a, ts.X.shape[1]), ts.X[:3]).shape == (3,)


def test_phm08_score_penalises_late_more_than_early() -> None:
    assert phm08_score(np.array([50.0]), np.array([50.0])) == 0.0
    late = phm08_score(np.array([50.0]), np.array([60.0]))
    early = phm08_score(np.array([50.0]), np.array([40.0]))
    assert late == pytest.approx(math.e - 1) and early == pytest.approx(math.exp(10 / 13) - 1)
    assert late > early
