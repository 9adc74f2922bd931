"""The population stability index and the drift report (apps/training/drift.py), pure."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pytest

from apps.training.drift import drift_report, level, psi, reference, shares

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_psi_of_a_distribution_with_itself_is_zero() -> None:
    assert psi([0.25, 0.25, 0.5], [0.25, 0.25, 0.5]) == 0.0


def test_psi_by_hand() -> None:
    expected, actual = [0.5, 0.5], [0.8, 0.2]
    by_hand = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert psi(expected, actual) == pytest.approx(by_hand)
    assert psi(expected, actual) == pytest.approx(psi(actual, expected))  # symmetric


def test_an_empty_bin_is_floored_not_infinite() -> None:
    value = psi([0.5, 0.5], [1.0, 0.0])
    assert math.isfinite(value) and value > 1.0


def test_psi_needs_the_same_bins() -> None:
    with pytest.raises(ValueError, match="same bins"):
        psi([0.5, 0.5], [1.0])


def test_shares_count_values_in_right_closed_bins_and_drop_nan() -> None:
    assert shares(np.array([0.0, 1.0, 1.5, 2.0, 9.0, np.nan]), [1.0, 2.0]) == [0.4, 0.4, 0.2]
    with pytest.raises(ValueError, match="no values"):
        shares(np.array([np.nan]), [1.0])


def test_reference_bins_hold_a_tenth_each_and_a_constant_feature_one_bin() -> None:
    X = np.column_stack([np.arange(1000, dtype=float), np.full(1000, 3.0)])
    moving, constant = reference(X, ["moving", "constant"])
    assert len(moving.edges) == 9 and all(s == pytest.approx(0.1) for s in moving.shares)
    assert constant.shares == [1.0, 0.0] and len(constant.edges) == 1


def test_same_population_is_stable_a_shifted_one_significant() -> None:
    rng = np.random.default_rng(1)
    train = rng.normal(0, 1, size=(5000, 2))
    refs = reference(train, ["a", "b"])
    same = drift_report("m", 1, refs, rng.normal(0, 1, size=(2000, 2)), machines=4, now=NOW)
    assert same.level == "stable" and same.max_psi < 0.05 and same.rows == 2000
    shifted = np.column_stack([rng.normal(0, 1, 2000), rng.normal(1.5, 1, 2000)])
    report = drift_report("m", 1, refs, shifted, machines=4, now=NOW)
    assert [f.name for f in report.features] == ["b", "a"]  # highest first
    assert report.level == "significant" and report.features[0].psi > 0.25 and report.features[1].psi < 0.05


def test_levels() -> None:
    assert (level(0.0), level(0.1), level(0.2), level(0.25), level(3.0)) == (
        "stable", "moderate", "moderate", "significant", "significant"
    )  # fmt: skip


def test_a_report_needs_rows_in_the_reference_shape() -> None:
    refs = reference(np.ones((10, 2)), ["a", "b"])
    with pytest.raises(ValueError, match="no recent"):
        drift_report("m", 1, refs, np.empty((0, 2)), 0, NOW)
    with pytest.raises(ValueError, match="3 recent features"):
        drift_report("m", 1, refs, np.ones((5, 3)), 1, NOW)
