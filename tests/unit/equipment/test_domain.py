"""EquipmentActor core: hysteresis, dedupe, silence, top sensors and state round trips."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from apps.common import cmapss
from apps.common.contracts import Reading
from apps.common.features import offline_features
from apps.common.profiles import TURBOFAN, AlertThresholds
from apps.equipment.domain import (
    AlertHysteresis,
    EquipmentState,
    SequenceTracker,
    SilenceDetector,
    top_deviating_sensors,
)

T = AlertThresholds(warning_rul=50, critical_rul=20, consecutive=3, clear_margin=10)


def feed(h: AlertHysteresis, ruls: list[float]) -> list[tuple[str, str, int] | None]:
    out = []
    for i, rul in enumerate(ruls):
        t = h.update(rul, now=1000.0 + i)
        out.append(None if t is None else (t.event, t.severity, t.episode))
    return out


def test_warning_opens_after_exactly_three_predictions() -> None:
    h = AlertHysteresis(T)
    assert feed(h, [80, 50, 45]) == [None, None, None]
    assert feed(h, [49]) == [("open", "warning", 1)]
    assert h.level == "warning"


def test_a_single_high_prediction_resets_the_count() -> None:
    h = AlertHysteresis(T)
    assert feed(h, [40, 40, 55, 40, 40]) == [None] * 5
    assert feed(h, [40]) == [("open", "warning", 1)]


def test_escalates_to_critical_after_three_critical_predictions() -> None:
    h = AlertHysteresis(T)
    events = feed(h, [45, 45, 45, 19, 20, 25, 18, 15, 10])
    assert events[2] == ("open", "warning", 1)
    assert events[3:8] == [None] * 5  # 25 broke the critical run
    assert events[8] == ("escalate", "critical", 1)


def test_straight_to_critical_opens_critical() -> None:
    h = AlertHysteresis(T)
    assert feed(h, [10, 10, 10]) == [None, None, ("open", "critical", 1)]


def test_clears_only_after_three_above_threshold_plus_margin_and_no_flapping() -> None:
    h = AlertHysteresis(T)
    feed(h, [45, 45, 45])
    # Oscillating around the warning threshold, and up to exactly 60, must not clear.
    assert feed(h, [55, 48, 58, 60, 60, 60, 61, 61, 52]) == [None] * 9
    assert h.level == "warning"
    assert feed(h, [61, 70, 100]) == [None, None, ("clear", "warning", 1)]
    assert h.level == "none"
    # A new episode gets a new number, so the alert id changes.
    assert feed(h, [30, 30, 30])[-1] == ("open", "warning", 2)


def test_critical_does_not_step_down_and_clear_keeps_critical_severity() -> None:
    h = AlertHysteresis(T)
    feed(h, [10, 10, 10])
    assert feed(h, [40, 40, 40, 40]) == [None] * 4
    assert h.level == "critical"
    assert feed(h, [90, 90, 90])[-1] == ("clear", "critical", 1)


def test_hysteresis_state_round_trip_mid_count() -> None:
    h = AlertHysteresis(T)
    feed(h, [45, 45, 45, 15, 15])
    back = AlertHysteresis.from_dict(json.loads(json.dumps(h.to_dict())), T)
    assert back == h
    assert feed(back, [15]) == [("escalate", "critical", 1)]


def test_sequence_tracker_drops_already_applied_and_in_batch_duplicates() -> None:
    tr = SequenceTracker(last_seq=4)
    readings = [make_reading(s) for s in (7, 3, 5, 5, 4, 6)]
    fresh, dup = tr.split(readings)
    assert [r.seq for r in fresh] == [5, 6, 7]
    assert dup == 3  # 3 and 4 already applied, second 5 is a duplicate within the batch
    assert tr.last_seq == 4  # split does not apply
    for r in fresh:
        tr.mark_applied(r.seq)
    assert not tr.is_new(7) and tr.is_new(8)
    with pytest.raises(ValueError):
        tr.mark_applied(7)


def test_silence_detector_opens_once_and_clears_when_data_returns() -> None:
    s = SilenceDetector(silence_after_seconds=300)
    assert s.check(last_seen=None, now=10_000) is None  # never seen: warming up, not silent
    assert s.check(last_seen=1000, now=1299) is None
    opened = s.check(last_seen=1000, now=1300)
    assert opened is not None and (opened.kind, opened.event, opened.episode) == ("silent", "open", 1)
    assert s.check(last_seen=1000, now=5000) is None  # already silent: no repeat
    cleared = s.on_reading()
    assert cleared is not None and (cleared.event, cleared.episode, cleared.raised_at) == ("clear", 1, 1300)
    assert s.on_reading() is None
    assert SilenceDetector.from_dict(s.to_dict(), 300) == s


def test_top_deviating_sensors_ranks_by_abs_z() -> None:
    rng = np.random.default_rng(1)
    base = rng.normal(0, 1, size=(30, 4))
    cur = base.copy()
    cur[:, 2] += 5 * base[:, 2].std()  # strongly up
    cur[:, 0] -= 2 * base[:, 0].std()  # moderately down
    top = top_deviating_sensors(base, cur, ["a", "b", "c", "d"], k=2)
    assert [d.sensor for d in top] == ["c", "a"]
    assert top[0].z_score == pytest.approx(5.0, rel=1e-6)
    assert top[1].z_score == pytest.approx(-2.0, rel=1e-6)


def test_top_deviating_sensors_flat_baseline_stays_finite() -> None:
    base = np.ones((30, 2))
    cur = np.ones((30, 2))
    cur[:, 1] = 1.5
    top = top_deviating_sensors(base, cur, ["flat", "moved"], k=1)
    assert top[0].sensor == "moved" and np.isfinite(top[0].z_score)


# --- EquipmentState on a real engine -----------------------------------------------------------------


def make_reading(seq: int, values: dict[str, float] | None = None, eq: str = "engine-7") -> Reading:
    return Reading(
        equipment_id=eq,
        timestamp=datetime(2024, 1, 1, tzinfo=UTC),
        seq=seq,
        values=values or dict.fromkeys(TURBOFAN.informative_sensors, 1.0),
    )


@pytest.fixture(scope="module")
def engine() -> np.ndarray:
    return cmapss.load_train()[7]


def engine_readings(traj: np.ndarray) -> list[Reading]:
    return [make_reading(int(row[1]), cmapss.row_values(row)) for row in traj]


def test_state_replay_with_retries_matches_offline_features(engine: np.ndarray) -> None:
    readings = engine_readings(engine)
    state = EquipmentState.new("engine-7", TURBOFAN)
    vectors = []
    total_dup = 0
    for start in range(0, len(readings), 13):
        batch = readings[start : start + 13] + readings[max(0, start - 2) : start]  # retried tail
        result, _ = state.apply_readings(batch, now=1000.0 + start)
        vectors += result.features
        total_dup += result.duplicates
        state = EquipmentState.from_dict("engine-7", json.loads(json.dumps(state.to_dict())))
    expected = offline_features(cmapss.sensor_matrix(engine, TURBOFAN), TURBOFAN)
    assert len(vectors) == expected.shape[0]
    np.testing.assert_allclose(np.array([v.values for v in vectors]), expected, rtol=0, atol=1e-9)
    assert [v.window_end_seq for v in vectors] == [int(c) for c in engine[TURBOFAN.window - 1 :, 1]]
    assert state.readings_applied == len(readings)
    assert state.duplicates == total_dup > 0
    assert state.tracker.last_seq == len(readings)
    assert state.baseline is not None
    np.testing.assert_array_equal(state.baseline, cmapss.sensor_matrix(engine, TURBOFAN)[: TURBOFAN.window])
    latest = state.latest_features()
    assert latest is not None
    np.testing.assert_allclose(latest.values, expected[-1], rtol=0, atol=1e-9)


def test_state_resending_a_whole_batch_changes_nothing(engine: np.ndarray) -> None:
    readings = engine_readings(engine)[:40]
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings(readings, now=1.0)
    before = state.to_dict()
    result, _ = state.apply_readings(readings, now=2.0)
    assert (result.accepted, result.duplicates, result.features) == (0, 40, [])
    after = state.to_dict()
    assert after["window"] == before["window"] and after["readings_applied"] == 40
    assert after["duplicates"] == 40


def test_state_status_alerts_and_snapshot(engine: np.ndarray) -> None:
    state = EquipmentState.new("engine-7", TURBOFAN)
    assert state.snapshot(now=0.0).status == "warming_up"
    state.apply_readings(engine_readings(engine)[:40], now=100.0)
    assert state.status() == "warming_up"  # full window but no prediction yet
    transitions = state.record_predictions([(31, 45.0), (32, 44.0), (33, 43.0)], model_version=3, now=101.0)
    assert [(t.event, t.severity) for t in transitions] == [("open", "warning")]
    alert = state.build_alert(transitions[0], now=101.0)
    assert alert.id == "engine-7:rul_low:1" and alert.state == "open"
    assert len(alert.top_sensors) == 3 and alert.model_version == 3
    snap = state.snapshot(now=101.0)
    assert (snap.status, snap.predicted_rul, snap.last_seq) == ("warning", 43.0, 40)
    assert snap.open_alert_severity == "warning"
    assert snap.last_reading_at == datetime.fromtimestamp(100.0, tz=UTC)
    state.mark_prediction_stale(now=102.0)
    assert state.snapshot(now=102.0).prediction_stale
    assert [p.predicted_rul for p in state.get_history(2)] == [44.0, 43.0]
    assert state.get_history(0) == []


def test_state_silence_then_return(engine: np.ndarray) -> None:
    readings = engine_readings(engine)
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings(readings[:35], now=1000.0)
    assert state.check_silence(now=1000.0 + TURBOFAN.silence_after_seconds - 1) is None
    opened = state.check_silence(now=1000.0 + TURBOFAN.silence_after_seconds)
    assert opened is not None and state.status() == "silent"
    assert state.build_alert(opened, now=2000.0).id == "engine-7:silent:1"
    state = EquipmentState.from_dict("engine-7", json.loads(json.dumps(state.to_dict())))
    _, transitions = state.apply_readings(readings[35:36], now=3000.0)
    assert [(t.kind, t.event) for t in transitions] == [("silent", "clear")]
    assert state.status() != "silent"


def test_state_dict_has_no_strings_the_dapr_serializer_would_rewrite(engine: np.ndarray) -> None:
    from dapr.serializers import DefaultJSONSerializer

    state = EquipmentState.new("2024-01-01", TURBOFAN)  # an id that looks like a date
    state.apply_readings([make_reading(i, eq="2024-01-01") for i in range(35)], now=1_700_000_000.5)
    state.record_predictions([(34, 30.0)], model_version=1, now=1_700_000_001.0)
    ser = DefaultJSONSerializer()
    d = state.to_dict()
    assert ser.deserialize(ser.serialize(d)) == json.loads(json.dumps(d))
    back = EquipmentState.from_dict("2024-01-01", ser.deserialize(ser.serialize(d)))
    assert back.to_dict() == d


def test_state_rejects_foreign_readings() -> None:
    state = EquipmentState.new("engine-7", TURBOFAN)
    with pytest.raises(ValueError, match="sent to actor"):
        state.apply_readings([make_reading(1, eq="engine-8")], now=0.0)
