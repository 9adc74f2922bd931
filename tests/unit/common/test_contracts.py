"""Wire contracts: bad input is refused with an error that names the field."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from apps.common.contracts import (
    MAX_BATCH_READINGS,
    Alert,
    HealthSnapshot,
    PredictRequest,
    Reading,
    ReadingBatch,
)

T0 = "2024-01-01T00:00:00Z"


def reading(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "equipment_id": "engine-001",
        "timestamp": T0,
        "seq": 0,
        "values": {"sensor_2": 641.82},
    }
    base.update(overrides)
    return base


def error_locs(exc: pytest.ExceptionInfo[ValidationError]) -> set[tuple[object, ...]]:
    return {tuple(e["loc"]) for e in exc.value.errors()}


def test_good_reading_parses_with_default_profile() -> None:
    r = Reading.model_validate(reading())
    assert r.profile == "turbofan"
    assert r.timestamp == datetime(2024, 1, 1, tzinfo=UTC)
    assert r.values == {"sensor_2": 641.82}


def test_integer_sensor_values_are_accepted_as_floats() -> None:
    # C-MAPSS prints some sensors as integers (e.g. 392); JSON clients will send them that way.
    r = Reading.model_validate_json(
        '{"equipment_id":"e1","timestamp":"2024-01-01T00:00:00Z","seq":1,"values":{"sensor_17":392}}'
    )
    assert r.values["sensor_17"] == 392.0


@pytest.mark.parametrize("bad_id", ["", "has space", "x" * 65, "slash/id", "ünïcode"])
def test_equipment_id_pattern_enforced(bad_id: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Reading.model_validate(reading(equipment_id=bad_id))
    assert ("equipment_id",) in error_locs(exc)


def test_naive_timestamp_rejected_with_clear_message() -> None:
    with pytest.raises(ValidationError) as exc:
        Reading.model_validate(reading(timestamp="2024-01-01T00:00:00"))
    assert ("timestamp",) in error_locs(exc)
    assert "timezone-aware" in str(exc.value)


@pytest.mark.parametrize("bad_seq", [-1, "5", True, 1.5])
def test_seq_must_be_a_non_negative_int(bad_seq: object) -> None:
    with pytest.raises(ValidationError) as exc:
        Reading.model_validate(reading(seq=bad_seq))
    assert ("seq",) in error_locs(exc)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_value_rejected_naming_sensor(bad: float) -> None:
    with pytest.raises(ValidationError) as exc:
        Reading.model_validate(reading(values={"sensor_2": 641.0, "sensor_3": bad}))
    [error] = exc.value.errors()
    assert error["loc"] == ("values",)
    assert "'sensor_3'" in error["msg"]
    assert "sensor_2" not in error["msg"]


def test_string_sensor_value_rejected() -> None:
    with pytest.raises(ValidationError) as exc:
        Reading.model_validate(reading(values={"sensor_2": "641.8"}))
    assert ("values", "sensor_2") in error_locs(exc)


def test_unknown_field_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        Reading.model_validate(reading(sequence=3))
    assert ("sequence",) in error_locs(exc)


def test_batch_limit() -> None:
    one = reading()
    ReadingBatch.model_validate({"readings": [one] * MAX_BATCH_READINGS})
    with pytest.raises(ValidationError):
        ReadingBatch.model_validate({"readings": [one] * (MAX_BATCH_READINGS + 1)})


def test_predict_request_rows_must_match_feature_names() -> None:
    PredictRequest(model_name="m", feature_names=["a", "b"], rows=[[1.0, 2.0]])
    with pytest.raises(ValidationError, match=r"rows\[1\] has 1 values, expected 2"):
        PredictRequest(model_name="m", feature_names=["a", "b"], rows=[[1.0, 2.0], [1.0]])
    with pytest.raises(ValidationError, match="not finite"):
        PredictRequest(model_name="m", feature_names=["a"], rows=[[math.nan]])


def test_alert_id_is_deterministic_per_episode() -> None:
    assert Alert.make_id("engine-1", "rul_low", 2) == "engine-1:rul_low:2"
    now = datetime(2024, 1, 1, tzinfo=UTC)
    alert = Alert(
        id=Alert.make_id("engine-1", "rul_low", 2),
        equipment_id="engine-1",
        kind="rul_low",
        episode=2,
        severity="warning",
        state="open",
        event="open",
        raised_at=now,
        updated_at=now,
    )
    assert Alert.model_validate_json(alert.model_dump_json()) == alert
    with pytest.raises(ValidationError):
        Alert.model_validate({**alert.model_dump(), "severity": "info"})


def test_health_snapshot_round_trips_through_json() -> None:
    snap = HealthSnapshot(
        equipment_id="e1",
        profile="turbofan",
        last_seq=-1,
        readings_applied=0,
        duplicates=0,
        status="warming_up",
        updated_at=datetime(2024, 1, 1, tzinfo=UTC),
    )
    assert HealthSnapshot.model_validate_json(snap.model_dump_json()) == snap
    with pytest.raises(ValidationError):
        HealthSnapshot.model_validate({**snap.model_dump(), "status": "fine"})
