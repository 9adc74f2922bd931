"""The feature spec's health index: a column the window statistics treat like one more sensor, computed
alike by the actor (its single window, its backlog's batch) and by training, on real C-MAPSS engines."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from apps.common import cmapss
from apps.common.features import (
    EARLY_READINGS,
    FROM_START,
    HEALTH_INDEX,
    FeatureSpec,
    HealthIndex,
    feature_names,
    n_features,
    online_features,
    reading_columns,
    reading_features,
)
from apps.common.profiles import TURBOFAN
from apps.training.quality import (
    FEATURE_STATISTICS,
    fit_health_index,
    fit_spec,
    reading_rows,
    settings_matrix,
    unit_features,
)
from apps.training.trainer import DEFAULT_RUL_CAP
from tests.unit.common.test_features import assert_actor_paths_equal_training


@functools.cache
def _fd002() -> tuple[dict[int, np.ndarray], FeatureSpec]:
    units = cmapss.load_train("FD002")
    return units, fit_spec(units, TURBOFAN)


def test_the_trainers_spec_has_a_health_index_named_after_the_sensors() -> None:
    _, spec = _fd002()
    assert spec.health_index is not None and len(spec.health_index.weights) == 14
    names = feature_names(TURBOFAN, spec)
    assert len(names) == n_features(TURBOFAN, spec) == 15 * len(FEATURE_STATISTICS) + 2
    assert names[14 * len(FEATURE_STATISTICS)] == f"{HEALTH_INDEX}__last"
    assert names[-2:] == [f"{HEALTH_INDEX}__{FROM_START}", "age_cycles"]
    assert spec.health_index.early_readings == EARLY_READINGS
    assert FeatureSpec.model_validate_json(spec.model_dump_json()) == spec  # the card's round trip


def test_the_health_index_tracks_the_capped_rul_on_training_machines() -> None:
    units, spec = _fd002()
    assert spec.health_index is not None and spec.conditions is not None
    s = len(TURBOFAN.informative_sensors)
    rows = reading_rows(units[7], TURBOFAN)
    index = spec.health_index.append_to(spec.conditions.normalise(rows[:, :s], rows[:, s:]))[:, -1]
    truth = np.minimum(np.arange(len(rows) - 1, -1, -1), DEFAULT_RUL_CAP)
    # one reading is noisy, but the index falls with the RUL: strongly correlated over a life
    assert np.corrcoef(index, truth)[0, 1] > 0.8
    assert index[-10:].mean() < index[:10].mean() - 50


def _without_from_start(spec: FeatureSpec) -> FeatureSpec:
    assert spec.health_index is not None
    return spec.model_copy(
        update={"health_index": spec.health_index.model_copy(update={"early_readings": 0})}
    )


def test_the_health_column_is_the_weighted_sum_of_the_standardised_sensors() -> None:
    units, spec = _fd002()
    spec = _without_from_start(spec)
    assert spec.health_index is not None and spec.conditions is not None
    traj = units[3]
    w = TURBOFAN.window
    sensors, settings = cmapss.sensor_matrix(traj, TURBOFAN), settings_matrix(traj, TURBOFAN)
    got = dict(
        zip(
            feature_names(TURBOFAN, spec),
            online_features(
                sensors[:w],
                float(w),
                TURBOFAN,
                settings=settings[:w],
                conditions=spec.conditions,
                statistics=spec.statistics,
                health_index=spec.health_index,
            ),
            strict=True,
        )
    )
    z = spec.conditions.normalise(sensors[:w], settings[:w])
    index = z @ np.array(spec.health_index.weights) + spec.health_index.intercept
    assert got[f"{HEALTH_INDEX}__last"] == pytest.approx(index[-1], abs=1e-9)
    assert got[f"{HEALTH_INDEX}__mean"] == pytest.approx(index.mean(), abs=1e-9)
    assert got[f"{HEALTH_INDEX}__recent_mean"] == pytest.approx(index[-10:].mean(), abs=1e-9)
    assert got[f"{HEALTH_INDEX}__slope"] == pytest.approx(np.polyfit(np.arange(w), index, 1)[0], abs=1e-9)


def test_from_start_is_the_recent_mean_less_the_mean_of_the_lifes_first_readings() -> None:
    units, spec = _fd002()
    assert spec.health_index is not None and spec.conditions is not None
    rows = reading_rows(units[4], TURBOFAN)
    s = len(TURBOFAN.informative_sensors)
    index = spec.health_index.append_to(spec.conditions.normalise(rows[:, :s], rows[:, s:]))[:, -1]
    names = feature_names(TURBOFAN, spec)
    feats = reading_features(rows, TURBOFAN, spec)  # a whole life: its first rows are the head
    got = feats[:, names.index(f"{HEALTH_INDEX}__{FROM_START}")]
    recent = feats[:, names.index(f"{HEALTH_INDEX}__recent_mean")]
    for t in (0, 4, EARLY_READINGS - 1, EARLY_READINGS, 150):
        first = index[: min(t + 1, EARLY_READINGS)].mean()
        assert got[t] == pytest.approx(recent[t] - first, abs=1e-9), t
    # the actor's owed positions (no padding) need the head; one as long as the life so far will do
    with pytest.raises(ValueError, match="first readings"):
        reading_features(rows[:70], TURBOFAN, spec, np.arange(1.0, 71.0), pad=False)
    with pytest.raises(ValueError, match="first readings"):
        reading_features(rows[:70], TURBOFAN, spec, np.arange(1.0, 71.0), pad=False, head=rows[:5])


@pytest.mark.parametrize("unit", [1, 2, 100])
def test_online_equals_offline_exactly_with_the_health_index(unit: int) -> None:
    """The actor's paths and training's, with the trainer's spec (health index and from_start)."""
    units, spec = _fd002()
    assert_actor_paths_equal_training(units[unit], spec)


def test_a_card_without_a_health_index_computes_what_it_did() -> None:
    units, spec = _fd002()
    old = FeatureSpec.model_validate_json(
        json.dumps({"window": TURBOFAN.window, "statistics": list(FEATURE_STATISTICS)})
    )
    assert old.health_index is None
    assert feature_names(TURBOFAN, old) == feature_names(TURBOFAN, spec)[: 14 * len(FEATURE_STATISTICS)] + [
        "age_cycles"
    ]
    without = spec.model_copy(update={"health_index": None})
    full, bare = unit_features(units[5], TURBOFAN, spec), unit_features(units[5], TURBOFAN, without)
    k = len(FEATURE_STATISTICS)
    assert np.array_equal(np.delete(full, np.s_[14 * k : 15 * k + 1], axis=1), bare)


def test_a_health_index_for_other_sensors_is_refused() -> None:
    spec = FeatureSpec(window=TURBOFAN.window, health_index=HealthIndex(weights=[1.0] * 3, intercept=0.0))
    with pytest.raises(ValueError, match="health index"):
        reading_features(np.ones((5, len(reading_columns(TURBOFAN)))), TURBOFAN, spec)


def test_the_fit_without_conditions_weighs_the_raw_sensors() -> None:
    units = {u: t for u, t in cmapss.load_train("FD001").items() if u <= 20}
    index = fit_health_index(units, TURBOFAN, None)
    rows = reading_rows(units[4], TURBOFAN)[:, : len(TURBOFAN.informative_sensors)]
    values = index.append_to(rows)[:, -1]
    assert values[-5:].mean() < values[:5].mean()
