"""The shared feature pipeline: online (actor) and offline (training) agree on real C-MAPSS engines."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from apps.common import cmapss
from apps.common.features import (
    EARLY_READINGS,
    EXTRA_STATISTICS,
    FROM_START,
    STATISTICS,
    FeatureSpec,
    OperatingConditions,
    RollingWindow,
    feature_names,
    n_features,
    offline_features,
    online_features,
    pad_start,
    reading_columns,
    reading_features,
)
from apps.common.features import _window_features as window_features
from apps.common.profiles import TURBOFAN
from apps.training.quality import fit_conditions, reading_rows, settings_matrix, unit_features


@pytest.fixture(scope="module")
def train_units() -> dict[int, np.ndarray]:
    return cmapss.load_train()


@pytest.mark.parametrize("unit", [1, 2, 37, 69, 100])
def test_online_equals_offline_on_real_units(train_units: dict[int, np.ndarray], unit: int) -> None:
    traj = train_units[unit]
    sensors = cmapss.sensor_matrix(traj, TURBOFAN)
    ages = traj[:, 1]
    offline = offline_features(sensors, TURBOFAN, ages=ages)
    w = TURBOFAN.window
    assert offline.shape == (traj.shape[0] - w + 1, n_features(TURBOFAN))
    # First window, a few in the middle, the last one (the failure cycle).
    for i in sorted({0, 1, offline.shape[0] // 3, offline.shape[0] // 2, offline.shape[0] - 1}):
        end = w - 1 + i
        online = online_features(sensors[end - w + 1 : end + 1], ages[end], TURBOFAN)
        np.testing.assert_allclose(online, offline[i], rtol=0, atol=1e-9)


def test_features_match_a_hand_computation(train_units: dict[int, np.ndarray]) -> None:
    sensors = cmapss.sensor_matrix(train_units[5], TURBOFAN)
    w = TURBOFAN.window
    window = sensors[10 : 10 + w]
    names = feature_names(TURBOFAN)
    got = dict(zip(names, online_features(window, 40.0, TURBOFAN), strict=True))
    col = window[:, TURBOFAN.informative_sensors.index("sensor_11")]
    assert got["sensor_11__last"] == col[-1]
    assert got["sensor_11__mean"] == pytest.approx(col.mean(), abs=1e-12)
    assert got["sensor_11__std"] == pytest.approx(col.std(ddof=0), abs=1e-12)
    assert got["sensor_11__min"] == col.min()
    assert got["sensor_11__max"] == col.max()
    assert got["sensor_11__slope"] == pytest.approx(np.polyfit(np.arange(w), col, 1)[0], abs=1e-9)
    assert got["age_cycles"] == 40.0


def test_slope_sign_follows_degradation(train_units: dict[int, np.ndarray]) -> None:
    # HPC degradation raises sensor_11 (Ps30) towards failure: its slope at the end must be positive.
    feats = offline_features(cmapss.sensor_matrix(train_units[1], TURBOFAN), TURBOFAN)
    slope_idx = feature_names(TURBOFAN).index("sensor_11__slope")
    assert feats[-1, slope_idx] > 0


def test_feature_names_are_stable() -> None:
    names = feature_names(TURBOFAN)
    assert len(names) == n_features(TURBOFAN) == 14 * 6 + 1
    assert names[:7] == [
        "sensor_2__last",
        "sensor_2__mean",
        "sensor_2__std",
        "sensor_2__min",
        "sensor_2__max",
        "sensor_2__slope",
        "sensor_3__last",
    ]
    assert names[-1] == "age_cycles"
    assert len(set(names)) == len(names)


def test_short_trajectory_yields_no_rows() -> None:
    out = offline_features(np.ones((TURBOFAN.window - 1, 14)), TURBOFAN)
    assert out.shape == (0, n_features(TURBOFAN))


def test_wrong_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="informative_sensors"):
        offline_features(np.ones((40, 24)), TURBOFAN)
    with pytest.raises(ValueError, match=f"exactly {TURBOFAN.window}"):
        online_features(np.ones((TURBOFAN.window - 1, 14)), 29, TURBOFAN)


def test_rolling_window_keeps_last_rows_oldest_first() -> None:
    w = RollingWindow(capacity=4, n_columns=2)
    assert len(w) == 0 and not w.is_full
    for i in range(6):
        w.append([i, 10 * i])
    assert w.is_full
    np.testing.assert_array_equal(w.to_array(), [[2, 20], [3, 30], [4, 40], [5, 50]])


def test_rolling_window_partial_and_round_trip() -> None:
    rng = np.random.default_rng(0)
    for n_rows in (0, 3, 30, 47):
        w = RollingWindow(30, 14)
        w.extend(rng.normal(size=(n_rows, 14)) * 1000)
        d = json.loads(json.dumps(w.to_dict()))  # must survive plain JSON
        back = RollingWindow.from_dict(d)
        assert len(back) == min(n_rows, 30)
        np.testing.assert_array_equal(back.to_array(), w.to_array())  # bit-exact, not approximately
        # The restored buffer keeps rolling correctly.
        back.append(np.arange(14.0))
        w.append(np.arange(14.0))
        np.testing.assert_array_equal(back.to_array(), w.to_array())


def test_rolling_window_serialisation_is_compact_and_not_date_like() -> None:
    w = RollingWindow(30, 14)
    w.extend(np.full((30, 14), 2024.0))
    data = w.to_dict()["data"]
    assert isinstance(data, str) and data.startswith("f8le:")
    assert len(data) < 30 * 14 * 8 * 4 / 3 + 16


def test_rolling_window_rejects_wrong_row_width() -> None:
    with pytest.raises(ValueError):
        RollingWindow(3, 2).append([1.0, 2.0, 3.0])


@functools.cache
def _conditions_fixture(subset: str) -> tuple[dict[int, np.ndarray], OperatingConditions]:
    units = cmapss.load_train(subset)
    return units, fit_conditions(units, TURBOFAN)


def test_conditions_are_the_flight_conditions_of_each_subset() -> None:
    assert len(_conditions_fixture("FD001")[1].centres) == 1
    _, six = _conditions_fixture("FD002")
    assert len(six.centres) == 6
    # Round trip through the model card's JSON loses nothing.
    assert OperatingConditions.model_validate_json(six.model_dump_json()) == six


@pytest.mark.parametrize("unit", [1, 2, 100])
def test_online_equals_offline_exactly_with_conditions_and_padding(unit: int) -> None:
    units, conditions = _conditions_fixture("FD002")
    traj = units[unit]
    sensors, settings, ages = (
        cmapss.sensor_matrix(traj, TURBOFAN),
        settings_matrix(traj, TURBOFAN),
        traj[:, 1],
    )
    offline = offline_features(sensors, TURBOFAN, ages, settings=settings, conditions=conditions, pad=True)
    assert offline.shape == (traj.shape[0], n_features(TURBOFAN))  # a prediction at every reading
    w = TURBOFAN.window
    for end in (0, 1, w - 2, w - 1, w, traj.shape[0] // 2, traj.shape[0] - 1):
        start = max(0, end - w + 1)
        online = online_features(
            sensors[start : end + 1],
            ages[end],
            TURBOFAN,
            settings=settings[start : end + 1],
            conditions=conditions,
            pad=True,
        )
        assert np.array_equal(online, offline[end]), end  # bit for bit, not merely close


def test_condition_normalisation_removes_the_operating_condition() -> None:
    units, conditions = _conditions_fixture("FD002")
    traj = units[3]
    raw = cmapss.sensor_matrix(traj, TURBOFAN)
    normalised = conditions.normalise(raw, settings_matrix(traj, TURBOFAN))
    # Raw T50 jumps by hundreds of degrees between conditions; standardised it stays within a few stds.
    col = TURBOFAN.informative_sensors.index("sensor_4")
    assert np.ptp(raw[:, col]) > 100
    assert np.abs(normalised[:, col]).max() < 6


def test_normalisation_needs_settings() -> None:
    units, conditions = _conditions_fixture("FD001")
    with pytest.raises(ValueError, match="operating settings"):
        offline_features(cmapss.sensor_matrix(units[1], TURBOFAN), TURBOFAN, conditions=conditions)


def test_a_card_spec_refuses_another_window() -> None:
    spec = FeatureSpec(window=TURBOFAN.window + 1)
    with pytest.raises(ValueError, match="window"):
        reading_features(np.ones((5, len(reading_columns(TURBOFAN)))), TURBOFAN, spec)
    assert FeatureSpec.model_validate_json(spec.model_dump_json()) == spec


@pytest.mark.parametrize("unit", [1, 100])
def test_backlog_windows_equal_the_training_rows_with_conditions(unit: int) -> None:
    """The actor's path (a batch of owed positions with `window - 1` rows of context, a young machine's
    context padded) equals training's padded rows bit for bit."""
    units, conditions = _conditions_fixture("FD002")
    spec = FeatureSpec(window=TURBOFAN.window, conditions=conditions)
    traj = units[unit]
    offline = unit_features(traj, TURBOFAN, spec)
    rows, w = reading_rows(traj, TURBOFAN), TURBOFAN.window
    for first, n in ((0, 3), (w - 2, 5), (traj.shape[0] - 7, 7)):
        context = pad_start(rows[: first + n], w - 1 + first + n)[first:]
        ages = traj[:, 1][first] - (w - 1) + np.arange(len(context), dtype=np.float64)
        online = reading_features(context, TURBOFAN, spec, ages, pad=False)
        assert np.array_equal(online, offline[first : first + n]), first


EXTENDED = (*STATISTICS, *EXTRA_STATISTICS)


def test_recent_statistics_match_a_hand_computation(train_units: dict[int, np.ndarray]) -> None:
    sensors = cmapss.sensor_matrix(train_units[5], TURBOFAN)
    w = TURBOFAN.window
    window = sensors[10 : 10 + w]
    spec = FeatureSpec(window=w, statistics=EXTENDED)
    got = dict(
        zip(
            feature_names(TURBOFAN, spec),
            online_features(window, 40.0, TURBOFAN, statistics=EXTENDED),
            strict=True,
        )
    )
    assert len(got) == n_features(TURBOFAN, spec) == 14 * 10 + 1
    col = window[:, TURBOFAN.informative_sensors.index("sensor_11")]
    weights = 0.9 ** np.arange(w - 1, -1, -1)
    assert got["sensor_11__last"] == col[-1]  # the six first, as before
    assert got["sensor_11__recent_mean"] == pytest.approx(col[-10:].mean(), abs=1e-12)
    assert got["sensor_11__ewm"] == pytest.approx((weights * col).sum() / weights.sum(), abs=1e-9)
    assert got["sensor_11__recent_slope"] == pytest.approx(
        np.polyfit(np.arange(20), col[-20:], 1)[0], abs=1e-9
    )
    assert got["sensor_11__trend"] == pytest.approx(col[-10:].mean() - col[:10].mean(), abs=1e-12)
    assert got["age_cycles"] == 40.0


def test_a_card_without_statistics_gets_the_six_and_unknown_ones_are_refused() -> None:
    old = FeatureSpec.model_validate_json(json.dumps({"window": TURBOFAN.window, "conditions": None}))
    assert old.statistics == STATISTICS and feature_names(TURBOFAN, old) == feature_names(TURBOFAN)
    extended = FeatureSpec(window=TURBOFAN.window, statistics=EXTENDED)
    assert FeatureSpec.model_validate_json(extended.model_dump_json()) == extended
    for bad in (("last", "median"), ("last", "last"), ()):
        with pytest.raises(ValueError, match="statistics"):
            FeatureSpec(window=TURBOFAN.window, statistics=bad)


@pytest.mark.parametrize("unit", [1, 2, 100])
def test_online_equals_offline_exactly_with_the_recent_statistics(unit: int) -> None:
    """Every statistic, conditions and padding: the actor's single window, its backlog's batch and
    training's rows are equal bit for bit."""
    units, conditions = _conditions_fixture("FD002")
    spec = FeatureSpec(window=TURBOFAN.window, conditions=conditions, statistics=EXTENDED)
    assert_actor_paths_equal_training(units[unit], spec)


def assert_actor_paths_equal_training(traj: np.ndarray, spec: FeatureSpec) -> None:
    """The actor's single window (`online_features`: without a health index's from_start), its
    backlog's batches (with the life's first readings it holds by then) and training's rows of one
    run: equal bit for bit."""
    sensors, settings, ages = (
        cmapss.sensor_matrix(traj, TURBOFAN),
        settings_matrix(traj, TURBOFAN),
        traj[:, 1],
    )
    offline = unit_features(traj, TURBOFAN, spec)
    assert offline.shape == (traj.shape[0], n_features(TURBOFAN, spec))
    names = feature_names(TURBOFAN, spec)
    single = [i for i, name in enumerate(names) if not name.endswith(f"__{FROM_START}")]
    w = TURBOFAN.window
    for end in (0, 1, w - 2, w - 1, w, traj.shape[0] // 2, traj.shape[0] - 1):
        start = max(0, end - w + 1)
        online = online_features(
            sensors[start : end + 1],
            ages[end],
            TURBOFAN,
            settings=settings[start : end + 1],
            conditions=spec.conditions,
            pad=True,
            statistics=spec.statistics,
            health_index=spec.health_index,
        )
        assert np.array_equal(online, offline[end, single]), end
    rows = reading_rows(traj, TURBOFAN)
    for first, n in ((0, 3), (5, 4), (w - 2, 5), (traj.shape[0] - 7, 7)):
        context = pad_start(rows[: first + n], w - 1 + first + n)[first:]
        context_ages = traj[:, 1][first] - (w - 1) + np.arange(len(context), dtype=np.float64)
        head = rows[: min(first + n, EARLY_READINGS)]  # what the actor holds by then
        batch = reading_features(context, TURBOFAN, spec, context_ages, pad=False, head=head)
        assert np.array_equal(batch, offline[first : first + n]), first


@pytest.mark.parametrize("n", [1, 5])
def test_shared_means_give_numpys_own_mean_and_std_bit_for_bit(n: int) -> None:
    """The statistics share one mean per window and reduce without numpy's wrappers: the same bits as
    numpy's mean and std of each window, for one window (the actor's) and a stack (training's)."""
    statistics = (*STATISTICS, *EXTRA_STATISTICS)
    windows = np.random.default_rng(7).normal(600.0, 5.0, size=(n, TURBOFAN.window, 3))
    got = window_features(windows, np.arange(n, dtype=np.float64), statistics)
    per_sensor = got[:, :-1].reshape(n, 3, len(statistics))
    k = statistics.index
    assert per_sensor[:, :, k("mean")].tobytes() == windows.mean(axis=1).tobytes()
    assert per_sensor[:, :, k("std")].tobytes() == windows.std(axis=1).tobytes()
    recent = windows[:, -10:, :].mean(axis=1)
    assert per_sensor[:, :, k("recent_mean")].tobytes() == recent.tobytes()
    assert per_sensor[:, :, k("trend")].tobytes() == (recent - windows[:, :10, :].mean(axis=1)).tobytes()
