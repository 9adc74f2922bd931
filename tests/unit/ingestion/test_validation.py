"""Batch validation: each rejection reason is precise, and good readings survive bad neighbours."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apps.common import cmapss
from apps.common.contracts import MAX_BATCH_READINGS
from apps.common.profiles import PROFILES
from apps.ingestion.validation import InvalidBatch, group_by_equipment, validate_batch

NOW = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
GOOD_VALUES = cmapss.row_values(cmapss.load_train()[1][0])


def good(seq: int = 0, eq: str = "engine-1", **overrides: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "equipment_id": eq,
        "profile": "turbofan",
        "timestamp": NOW.isoformat(),
        "seq": seq,
        "values": dict(GOOD_VALUES),
    }
    item.update(overrides)
    return item


def with_values(**changes: Any) -> dict[str, Any]:
    values = dict(GOOD_VALUES)
    for k, v in changes.items():
        if v is None:
            values.pop(k)
        else:
            values[k] = v
    return good(values=values)


BAD_CASES: dict[str, tuple[dict[str, Any] | Any, str]] = {
    "bad equipment id": (good(eq="engine 1"), "bad equipment_id"),
    "unknown profile": (good(profile="pump"), "unknown equipment profile 'pump'"),
    "unknown sensor": (with_values(sensor_99=1.0), "unknown sensor(s) for profile 'turbofan': sensor_99"),
    "missing sensor": (
        with_values(sensor_11=None),
        "missing sensor(s) required by profile 'turbofan': sensor_11",
    ),
    "non-finite": (with_values(sensor_4=math.nan), "non-finite value: sensor 'sensor_4'"),
    "infinite": (with_values(sensor_4=math.inf), "non-finite value: sensor 'sensor_4'"),
    "out of range": (
        with_values(sensor_2=5000.0),
        "sensor 'sensor_2' value 5000.0 outside the plausible range [480, 700]",
    ),
    "future": (good(timestamp=(NOW + timedelta(minutes=5, seconds=1)).isoformat()), "in the future"),
    "naive timestamp": (good(timestamp="2024-06-01T12:00:00"), "naive timestamp"),
    "bad seq negative": (good(seq=-3), "bad seq"),
    "bad seq string": (good(seq="7"), "bad seq"),
    "not an object": ("just a string", "reading must be a JSON object"),
    "string value": (with_values(sensor_2="641.8"), "bad values for sensor 'sensor_2'"),
    "missing field": ({k: v for k, v in good().items() if k != "seq"}, "missing field 'seq'"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_each_rejection_reason_is_precise_and_good_readings_survive(case: str) -> None:
    bad, expected = BAD_CASES[case]
    batch = {"readings": [good(seq=1), bad, good(seq=2, eq="engine-2")]}
    ok, rejected = validate_batch(batch, PROFILES, NOW)
    assert [(r.equipment_id, r.seq) for r in ok] == [("engine-1", 1), ("engine-2", 2)]
    assert len(rejected) == 1
    assert rejected[0].index == 1
    assert expected in rejected[0].reason, rejected[0].reason


def test_rejection_names_the_equipment_when_it_is_known() -> None:
    _, rejected = validate_batch([with_values(sensor_2=1.0)], PROFILES, NOW)
    assert rejected[0].equipment_id == "engine-1"
    _, rejected = validate_batch([7], PROFILES, NOW)
    assert rejected[0].equipment_id is None


def test_timestamp_just_inside_the_skew_and_in_the_past_is_fine() -> None:
    near_future = good(timestamp=(NOW + timedelta(minutes=5)).isoformat())
    old = good(seq=1, timestamp="2001-01-01T00:00:00+02:00")
    ok, rejected = validate_batch([near_future, old], PROFILES, NOW)
    assert len(ok) == 2 and rejected == []


def test_several_problems_of_one_reading_are_all_reported() -> None:
    values = dict(GOOD_VALUES, sensor_2=5000.0, bogus=1.0)
    _, rejected = validate_batch([good(values=values)], PROFILES, NOW)
    reason = rejected[0].reason
    assert "unknown sensor" in reason and "sensor_2" in reason and "plausible range" in reason


def test_optional_channels_may_be_omitted() -> None:
    # Only the informative sensors and the operating settings feed the model; a gateway that drops
    # constant sensors is fine.
    values = {k: v for k, v in GOOD_VALUES.items() if k not in ("sensor_1", "sensor_5")}
    ok, rejected = validate_batch([good(values=values)], PROFILES, NOW)
    assert len(ok) == 1 and rejected == []


def test_operating_settings_are_required() -> None:
    # They say which operating condition normalises the sensors: the features cannot do without them.
    values = {k: v for k, v in GOOD_VALUES.items() if k != "op_setting_3"}
    ok, rejected = validate_batch([good(values=values)], PROFILES, NOW)
    assert ok == [] and "op_setting_3" in rejected[0].reason


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"items": []}, "unexpected batch fields"),
        ({"readings": "x"}, "'readings' list"),
        ({"readings": []}, "no readings"),
        (42, "'readings' list"),
        ([good()] * (MAX_BATCH_READINGS + 1), "limit is 5000"),
    ],
)
def test_unusable_envelopes_raise(raw: Any, message: str) -> None:
    with pytest.raises(InvalidBatch, match=message):
        validate_batch(raw, PROFILES, NOW)


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        validate_batch([good()], PROFILES, datetime(2024, 1, 1))


def test_group_by_equipment_keeps_first_seen_order_and_sorts_by_seq() -> None:
    ok, _ = validate_batch(
        [good(3, "b"), good(1, "a"), good(2, "b"), good(0, "a"), good(2, "b")], PROFILES, NOW
    )
    groups = group_by_equipment(ok)
    assert list(groups) == ["b", "a"]
    assert [r.seq for r in groups["b"]] == [2, 2, 3]
    assert [r.seq for r in groups["a"]] == [0, 1]


def test_a_batch_judges_each_reading_as_it_would_be_judged_alone() -> None:
    """The profile checks run on the whole batch at once (readings with the same channels in the same
    order as one matrix); every reading must still get exactly its own verdict and reasons."""
    low, high = PROFILES["turbofan"].channels["sensor_2"]
    reordered = dict(reversed(list(GOOD_VALUES.items())))
    items: list[Any] = [
        good(seq=0),
        with_values(sensor_2=low),  # the range's ends are inside it
        with_values(sensor_2=high),
        with_values(sensor_2=high + 0.01),
        with_values(sensor_3=-1.0),
        good(seq=5, values=reordered),
        good(seq=6, values=dict(reordered, sensor_2=low - 1)),
        with_values(sensor_11=None),
        with_values(sensor_99=1.0),
        good(seq=9, timestamp=(NOW + timedelta(minutes=6)).isoformat()),
        good(seq=10, profile="turbofan-anomaly"),
        good(seq=11, profile="turbofan-anomaly", values=dict(GOOD_VALUES, sensor_2=high + 1)),
        "not a reading",
        good(seq=13),
    ]
    ok, rejected = validate_batch(items, PROFILES, NOW)
    alone = [validate_batch([item], PROFILES, NOW) for item in items]
    assert [(r.equipment_id, r.seq, r.profile) for r in ok] == [
        (r.equipment_id, r.seq, r.profile) for good_alone, _ in alone for r in good_alone
    ]
    assert [(r.index, r.reason) for r in rejected] == [
        (i, bad[0].reason) for i, (_, bad) in enumerate(alone) if bad
    ]
    assert [r.index for r in rejected] == [3, 4, 6, 7, 8, 9, 11, 12]
