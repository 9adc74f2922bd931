"""Fleets built from the real FD001 trajectories: valid readings, ordering, noise determinism."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from apps.common.contracts import Reading
from apps.common.profiles import PROFILES, TURBOFAN
from apps.ingestion.validation import validate_batch
from vigil.fleet import (
    VALUE_COLUMNS,
    Fleet,
    FleetError,
    Machine,
    batches,
    channel_spread,
    load_units,
    parse_units,
    replay_fleet,
    simulated_fleet,
)

NOW = datetime(2024, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def train() -> dict[int, np.ndarray]:
    return load_units("train")


def all_readings(fleet: Fleet) -> list[dict]:
    return [r for t in range(fleet.n_ticks) for r in fleet.tick(t, NOW + timedelta(seconds=t))]


def test_replay_readings_are_valid_readings_and_pass_ingestion_validation(train: dict) -> None:
    fleet = replay_fleet(train, [1, 2, 3], "fd001-")
    readings = all_readings(fleet)
    assert len(readings) == fleet.total_readings == sum(len(train[u]) for u in (1, 2, 3))
    for r in readings[:50] + readings[-50:]:
        Reading.model_validate(r)  # the contract (strict types, finite, aware timestamp)
    good, rejected = validate_batch(readings[:5000], PROFILES, NOW + timedelta(days=1))
    assert rejected == [] and len(good) == min(5000, len(readings))


def test_replay_values_are_the_real_rows(train: dict) -> None:
    fleet = replay_fleet(train, [7], "e-")
    first = fleet.tick(0, NOW)[0]
    assert first["equipment_id"] == "e-007"
    assert first["seq"] == 1 and first["profile"] == "turbofan"
    assert first["values"] == {c: float(v) for c, v in zip(VALUE_COLUMNS, train[7][0, 2:], strict=True)}
    assert first["timestamp"] == NOW.isoformat()


def test_all_units_advance_together_one_reading_per_cycle(train: dict) -> None:
    fleet = replay_fleet(train, [1, 2, 3], "fd001-")
    assert fleet.n_ticks == max(len(train[u]) for u in (1, 2, 3))
    for t in (0, 100, fleet.n_ticks - 1):
        tick = fleet.tick(t, NOW)
        # machines in fleet order, each at most once, and each at cycle t + 1
        ids = [r["equipment_id"] for r in tick]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert {r["seq"] for r in tick} == {t + 1}
    # a unit that has failed stops reporting; the others go on
    shortest = min((1, 2, 3), key=lambda u: len(train[u]))
    after = fleet.tick(len(train[shortest]), NOW)
    assert f"fd001-{shortest:03d}" not in {r["equipment_id"] for r in after}
    per_machine: dict[str, list[int]] = {}
    for r in all_readings(fleet):
        per_machine.setdefault(r["equipment_id"], []).append(r["seq"])
    for seqs in per_machine.values():
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert fleet.readings_per_tick() == [len(fleet.tick(t, NOW)) for t in range(fleet.n_ticks)]


def test_replay_can_stop_after_the_first_cycles(train: dict) -> None:
    fleet = replay_fleet(train, [1, 2], "e-", max_cycles=40)
    assert fleet.n_ticks == 40 and fleet.total_readings == 80
    with pytest.raises(FleetError, match="--cycles"):
        replay_fleet(train, [1], "e-", max_cycles=0)


def test_tick_needs_an_aware_time(train: dict) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        replay_fleet(train, [1], "e-").tick(0, datetime(2024, 1, 1))


def test_test_set_units_are_cut_short() -> None:
    test = load_units("test")
    fleet = replay_fleet(test, [1], "t-")
    assert fleet.total_readings == len(test[1])


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("1-3,7", [1, 2, 3, 7]), ("5", [5]), (" 2 - 4 , 3 ", [2, 3, 4]), ("all", list(range(1, 101)))],
)
def test_parse_units(spec: str, expected: list[int]) -> None:
    assert parse_units(spec, range(1, 101)) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("1-3,x", r"bad --units item 'x'"),
        ("", r"bad --units item ''"),
        ("5-2", "end is before the start"),
        ("1,101,150", r"unit\(s\) 101, 150 not in the data set \(it has units 1-100\)"),
        ("1;2", "bad --units item"),
    ],
)
def test_bad_units_give_a_clear_error(spec: str, message: str) -> None:
    with pytest.raises(FleetError, match=message):
        parse_units(spec, range(1, 101))


def test_prefix_that_ingestion_would_reject_is_refused_up_front(train: dict) -> None:
    with pytest.raises(FleetError, match="ingestion rejects"):
        replay_fleet(train, [1], "bad prefix/")
    with pytest.raises(FleetError, match="ingestion rejects"):
        simulated_fleet(train, 3, prefix="x" * 60)


def test_simulated_fleet_is_deterministic_per_seed(train: dict) -> None:
    a = simulated_fleet(train, 20, seed=42)
    b = simulated_fleet(train, 20, seed=42)
    c = simulated_fleet(train, 20, seed=43)
    for ma, mb in zip(a.machines, b.machines, strict=True):
        assert (ma.unit, ma.start_tick) == (mb.unit, mb.start_tick)
        np.testing.assert_array_equal(ma.trajectory, mb.trajectory)
    assert any(
        not np.array_equal(ma.trajectory, mc.trajectory)
        for ma, mc in zip(a.machines, c.machines, strict=True)
    )
    # machine i does not depend on the fleet size
    bigger = simulated_fleet(train, 30, seed=42)
    np.testing.assert_array_equal(bigger.machines[5].trajectory, a.machines[5].trajectory)


def test_simulated_noise_is_scaled_to_each_sensors_spread(train: dict) -> None:
    spread = channel_spread(train)
    fleet = simulated_fleet(train, 200, seed=1, noise=0.2, max_shift=0)
    diffs = np.vstack([m.trajectory[:, 2:] - train[m.unit][:, 2:] for m in fleet.machines])
    # the unit/cycle columns are untouched
    for m in fleet.machines:
        np.testing.assert_array_equal(m.trajectory[:, :2], train[m.unit][:, :2])
    constant = spread == 0
    assert constant.any() and np.all(diffs[:, constant] == 0)
    ratio = diffs[:, ~constant].std(axis=0) / spread[~constant]
    assert np.allclose(ratio, 0.2, rtol=0.1), ratio


def test_simulated_fleet_shifts_starts_and_stays_valid(train: dict) -> None:
    fleet = simulated_fleet(train, 50, seed=3, noise=1.0, max_shift=40)
    starts = [m.start_tick for m in fleet.machines]
    assert min(starts) >= 0 and max(starts) <= 40 and len(set(starts)) > 5
    assert len({m.unit for m in fleet.machines}) > 10
    assert fleet.machines[0].equipment_id == "sim-00000"
    # heavy noise is clipped to the profile's plausible ranges: ingestion accepts every reading
    readings = all_readings(fleet)
    for chunk in batches(readings, 5000):
        _, rejected = validate_batch(chunk, PROFILES, NOW + timedelta(days=1))
        assert rejected == []
    for m in fleet.machines:
        for column, name in enumerate(VALUE_COLUMNS, start=2):
            lo, hi = TURBOFAN.channels[name]
            assert lo <= m.trajectory[:, column].min() and m.trajectory[:, column].max() <= hi


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"machines": 0}, "--machines"),
        ({"machines": 2, "noise": -1.0}, "--noise"),
        ({"machines": 2, "max_shift": -1}, "--max-shift"),
    ],
)
def test_simulated_fleet_refuses_bad_options(train: dict, kwargs: dict, message: str) -> None:
    with pytest.raises(FleetError, match=message):
        simulated_fleet(train, **kwargs)


def test_batches_keep_order_and_size() -> None:
    items = [{"i": i} for i in range(10)]
    chunks = list(batches(items, 4))
    assert [len(c) for c in chunks] == [4, 4, 2]
    assert [x for c in chunks for x in c] == items
    with pytest.raises(FleetError):
        list(batches(items, 0))


def test_fleet_refuses_duplicate_ids_and_empty() -> None:
    traj = np.zeros((3, 26))
    with pytest.raises(FleetError, match="unique"):
        Fleet((Machine("a", 1, traj), Machine("a", 2, traj)))
    with pytest.raises(FleetError, match="no machines"):
        Fleet(())
