"""The wire contracts refuse what would become a bad state key, file name or number: one case each."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from apps.common.contracts import MAX_SEQ, PredictRequest, Reading


def reading(**overrides: Any) -> dict[str, Any]:
    base = {
        "equipment_id": "engine-001",
        "timestamp": "2024-01-01T00:00:00Z",
        "seq": 1,
        "values": {"sensor_2": 641.8},
    }
    return base | overrides


def refused(raw: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as info:
        Reading.model_validate_json(json.dumps(raw))
    return str(info.value)


@pytest.mark.parametrize(
    "equipment_id",
    ["a||b", "a/b", "..", ".", ".hidden", "a\x00b", "line\nbreak", "x" * 10_000, "", "caf\u00e9"],
)
def test_ids_that_would_be_bad_keys_or_paths_are_refused(equipment_id: str) -> None:
    assert "equipment_id" in refused(reading(equipment_id=equipment_id))


def test_ids_with_dots_inside_are_still_fine() -> None:
    assert Reading.model_validate(reading(equipment_id="line-3.press_7")).equipment_id == "line-3.press_7"


@pytest.mark.parametrize("seq", [MAX_SEQ + 1, 2**70, -1])
def test_seq_beyond_what_json_numbers_hold_exactly_is_refused(seq: int) -> None:
    assert "seq" in refused(reading(seq=seq))


def test_a_seq_of_ten_to_the_400_is_refused() -> None:
    with pytest.raises(ValidationError, match="seq"):
        Reading.model_validate_json(
            '{"equipment_id": "e", "timestamp": "2024-01-01T00:00:00Z", '
            '"seq": 1' + "0" * 400 + ', "values": {"s": 1.0}}'
        )


def test_the_largest_exact_seq_is_accepted() -> None:
    assert Reading.model_validate(reading(seq=MAX_SEQ)).seq == MAX_SEQ


@pytest.mark.parametrize(
    "timestamp", ["1969-12-31T23:59:59Z", "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"]
)
def test_timestamps_outside_the_sane_window_are_refused(timestamp: str) -> None:
    assert "between 1970-01-01 and 2200-01-01" in refused(reading(timestamp=timestamp))


def test_sensor_names_are_bounded() -> None:
    assert "values" in refused(reading(values={"s" * 65: 1.0}))
    assert "values" in refused(reading(values={"": 1.0}))


def test_a_reading_with_too_many_values_is_refused() -> None:
    assert "values" in refused(reading(values={f"s{i}": 1.0 for i in range(257)}))


def test_prediction_rows_take_numbers_only_and_bounded_names() -> None:
    good = {"model_name": "m", "feature_names": ["a"], "rows": [[1.0]]}
    assert PredictRequest.model_validate(good).rows == [[1.0]]
    with pytest.raises(ValidationError, match="rows"):
        PredictRequest.model_validate_json(json.dumps(good | {"rows": [["1.0"]]}))
    with pytest.raises(ValidationError, match="feature_names"):
        PredictRequest.model_validate(good | {"feature_names": ["x" * 129]})
