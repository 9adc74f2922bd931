"""Profiles and the bundled C-MAPSS data (FD001, FD002) agree with each other."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from apps.common import cmapss
from apps.common.profiles import PROFILES, TURBOFAN, UnknownProfile, get_profile


def test_get_profile_and_unknown_profile_message() -> None:
    assert get_profile("turbofan") == TURBOFAN
    with pytest.raises(UnknownProfile, match="unknown equipment profile 'pump'.*turbofan"):
        get_profile("pump")


def test_turbofan_schema() -> None:
    assert set(TURBOFAN.channels) == {f"op_setting_{i}" for i in (1, 2, 3)} | {
        f"sensor_{i}" for i in range(1, 22)
    }
    assert len(TURBOFAN.informative_sensors) == 14
    assert TURBOFAN.thresholds.warning_rul == 50 and TURBOFAN.thresholds.critical_rul == 20
    assert TURBOFAN.thresholds.clear_rul == 60
    assert PROFILES["turbofan"] == TURBOFAN


def test_loader_shapes_match_the_readme() -> None:
    train, test, rul = cmapss.load_train(), cmapss.load_test(), cmapss.load_rul()
    assert sorted(train) == list(range(1, 101)) and sorted(test) == list(range(1, 101))
    assert sum(t.shape[0] for t in train.values()) == 20631
    assert sum(t.shape[0] for t in test.values()) == 13096
    assert all(t.shape[1] == 26 for t in train.values())
    lengths = [t.shape[0] for t in train.values()]
    assert min(lengths) == 128 and max(lengths) == 362
    assert min(t.shape[0] for t in test.values()) == 31
    assert min(rul.values()) == 7 and max(rul.values()) == 145
    for traj in train.values():  # contiguous cycles from 1
        np.testing.assert_array_equal(traj[:, 1], np.arange(1, traj.shape[0] + 1))


def test_every_fd001_value_is_plausible_and_informative_sensors_move() -> None:
    for units in (cmapss.load_train(), cmapss.load_test()):
        data = np.vstack(list(units.values()))
        for name, (lo, hi) in TURBOFAN.channels.items():
            col = data[:, cmapss.COLUMNS.index(name)]
            assert lo <= col.min() and col.max() <= hi, name
    train = np.vstack(list(cmapss.load_train().values()))
    sensors = cmapss.sensor_matrix(train, TURBOFAN)
    assert np.all(sensors.std(axis=0) > 1e-3)


def test_rul_targets() -> None:
    np.testing.assert_array_equal(cmapss.rul_targets(5, cap=None), [4, 3, 2, 1, 0])
    np.testing.assert_array_equal(cmapss.rul_targets(5, cap=2), [2, 2, 2, 1, 0])
    assert cmapss.rul_targets(200)[0] == 125


def test_data_dir_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(cmapss.DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="VIGIL_DATA_DIR"):
        cmapss.load_rul()


def test_row_values_are_a_reading_payload() -> None:
    row = cmapss.load_train()[1][0]
    values = cmapss.row_values(row)
    assert set(values) == set(TURBOFAN.channels)
    assert values["sensor_2"] == 641.82
