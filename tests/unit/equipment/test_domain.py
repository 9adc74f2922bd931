"""EquipmentActor core: hysteresis, dedupe, silence, top sensors and state round trips."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from apps.common import cmapss
from apps.common.contracts import FeatureVector, Reading
from apps.common.features import FeatureSpec, RollingWindow
from apps.common.profiles import TURBOFAN, AlertThresholds
from apps.equipment.alarms import AlertHysteresis, AlertTransition, TimedAlarm
from apps.equipment.announce import alerts_to_reannounce, build_alert, remember_alert
from apps.equipment.backlog import MAX_OWED
from apps.equipment.codec import decode_state, encode_state, json_layout
from apps.equipment.domain import EquipmentState, top_deviating_sensors
from apps.equipment.sequence import APPLIED_HORIZON, SequenceTracker
from apps.training.quality import fit_spec, unit_features

T = AlertThresholds(warning_rul=50, critical_rul=20, consecutive=3, clear_margin=10)


_CLOCKS: dict[int, itertools.count[int]] = {}


def feed(h: AlertHysteresis, ruls: list[float]) -> list[tuple[str, str, int] | None]:
    """One prediction per reading, a second apart, continuing the hysteresis' own timeline (reading n
    has seq n and timestamp 1000 + n)."""
    clock = _CLOCKS.setdefault(id(h), itertools.count())
    out = []
    for rul in ruls:
        n = next(clock)
        t = h.update(rul, seq=n, at=1000.0 + n)
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
    tr = SequenceTracker()
    for seq in range(5):
        tr.mark_applied(seq)
    readings = [make_reading(s) for s in (7, 3, 5, 5, 4, 6)]
    split = tr.split(readings)
    assert [r.seq for r in split.fresh] == [5, 6, 7]
    assert split.duplicates == 3  # 3 and 4 already applied, second 5 is a duplicate within the batch
    assert split.late == []
    assert tr.last_seq == 4  # split does not apply
    for r in split.fresh:
        tr.mark_applied(r.seq)
    assert tr.was_applied(7) and not tr.was_applied(8)
    with pytest.raises(ValueError):
        tr.mark_applied(7)


def test_sequence_tracker_tells_a_never_applied_seq_from_a_duplicate() -> None:
    tr = SequenceTracker()
    for seq in (0, 1, 2, 5, 6):  # 3 and 4 never arrived
        tr.mark_applied(seq)
    split = tr.split([make_reading(s) for s in (1, 3, 3, 4, 6, 7)])
    assert [r.seq for r in split.late] == [3, 4]
    assert split.duplicates == 3  # 1, 6 and the second 3
    assert [r.seq for r in split.fresh] == [7]
    back = SequenceTracker.from_dict(json.loads(json.dumps(tr.to_dict())))
    assert back == tr and back.was_applied(2) and not back.was_applied(3)


def test_sequence_tracker_horizon_is_bounded() -> None:
    tr = SequenceTracker()
    tr.mark_applied(0)
    tr.mark_applied(APPLIED_HORIZON * 3)  # a big jump forgets everything before it
    assert tr.applied == 1 and tr.was_applied(0) is None
    for seq in range(APPLIED_HORIZON * 3 + 1, APPLIED_HORIZON * 5):
        tr.mark_applied(seq)
    assert tr.applied.bit_length() <= APPLIED_HORIZON
    assert tr.was_applied(APPLIED_HORIZON * 5 - APPLIED_HORIZON) is True
    assert tr.was_applied(APPLIED_HORIZON * 5 - APPLIED_HORIZON - 1) is None


def test_state_written_before_the_bitmap_reads_as_gap_free() -> None:
    tr = SequenceTracker.from_dict({"last_seq": 9})
    assert all(tr.was_applied(s) for s in range(10))


def test_timed_alarm_opens_once_and_clears_when_the_condition_ends() -> None:
    s = TimedAlarm("silent", after_seconds=300)
    assert s.check(since=None, now=10_000) is None  # never seen: warming up, not silent
    assert s.check(since=1000, now=1299) is None
    opened = s.check(since=1000, now=1300)
    assert opened is not None and (opened.kind, opened.event, opened.episode) == ("silent", "open", 1)
    assert s.check(since=1000, now=5000) is None  # already silent: no repeat
    cleared = s.condition_ended(now=5001)
    assert cleared is not None and (cleared.event, cleared.episode, cleared.raised_at) == ("clear", 1, 1300)
    assert (cleared.at, cleared.revision) == (5001, 2)
    assert s.condition_ended(now=5002) is None
    assert TimedAlarm.from_dict("silent", s.to_dict(), 300) == s


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
        values=values or dict.fromkeys(TURBOFAN.required_channels, 1.0),
    )


@pytest.fixture(scope="module")
def engine() -> np.ndarray:
    return cmapss.load_train()[7]


def engine_readings(traj: np.ndarray) -> list[Reading]:
    return [make_reading(int(row[1]), cmapss.row_values(row)) for row in traj]


def predict_owed(
    state: EquipmentState,
    now: float,
    limit: int = 5000,
    rul: float | None = None,
    spec: FeatureSpec | None = None,
) -> list[FeatureVector]:
    """What the actor does when inference answers: a made-up RUL per owed window (`rul`, or one that
    falls with the machine's age and crosses both thresholds near the end of engine 7's 259 cycles)."""
    vectors = state.owed_features(limit, spec)
    ruls = [rul if rul is not None else 260.0 - v.age_cycles for v in vectors]
    state.record_predictions([(v.window_end_seq, r) for v, r in zip(vectors, ruls, strict=True)], 1, now)
    return vectors


def test_state_replay_with_retries_matches_offline_features(engine: np.ndarray) -> None:
    """Batches with retried tails and a state round trip between them: the actor's features at every
    reading (the first ones padded), normalised per operating condition, equal training's bit for bit."""
    train = cmapss.load_train()
    spec = fit_spec({u: train[u] for u in range(1, 21)}, TURBOFAN)
    readings = engine_readings(engine)
    state = EquipmentState.new("engine-7", TURBOFAN)
    vectors = []
    total_dup = 0
    for start in range(0, len(readings), 13):
        batch = readings[start : start + 13] + readings[max(0, start - 2) : start]  # retried tail
        result, _ = state.apply_readings(batch, now=1000.0 + start)
        vectors += predict_owed(state, now=1000.0 + start, spec=spec)
        total_dup += result.duplicates
        state = decode_state("engine-7", json.loads(json.dumps(encode_state(state))))
    expected = unit_features(engine, TURBOFAN, spec)
    assert len(vectors) == expected.shape[0] == len(readings)
    assert np.array_equal(np.array([v.values for v in vectors]), expected)
    assert [v.window_end_seq for v in vectors] == [int(c) for c in engine[:, 1]]
    assert state.readings_applied == len(readings)
    assert state.duplicates == total_dup > 0
    assert state.tracker.last_seq == len(readings)
    assert state.baseline is not None
    np.testing.assert_array_equal(state.baseline, cmapss.sensor_matrix(engine, TURBOFAN)[: TURBOFAN.window])
    assert state.owed_features(10) == []


def test_predictions_owed_during_an_outage_catch_up_in_order(engine: np.ndarray) -> None:
    """Inference down for 60 readings, then back: same history and alerts as a run without the outage."""
    readings = engine_readings(engine)

    def run(outage: range) -> EquipmentState:
        state = EquipmentState.new("engine-7", TURBOFAN)
        for i, reading in enumerate(readings):
            state.apply_readings([reading], now=float(i))
            if i in outage:
                state.mark_prediction_stale(now=float(i))
                assert state.status() in ("stale", "warning", "critical") or not state.window.is_full
            else:
                predict_owed(state, now=float(i), limit=7)  # small batches: several calls per catch-up
                predict_owed(state, now=float(i))
            state = decode_state("engine-7", json.loads(json.dumps(encode_state(state))))
        return state

    steady, hung = run(range(0)), run(range(200, 250))  # both thresholds are crossed in the outage
    assert [(p.seq, p.predicted_rul) for p in hung.history] == [
        (p.seq, p.predicted_rul) for p in steady.history
    ]
    # Same levels, episodes and counts; only raised_at differs (the wall time the catch-up recorded it).
    assert replace(hung.hysteresis, raised_at=0.0) == replace(steady.hysteresis, raised_at=0.0)
    assert steady.hysteresis.level == "critical"
    assert not hung.prediction_stale and hung.status() == steady.status()
    assert hung.snapshot(now=0.0).predictions_owed == 0


def test_alerts_decided_in_a_catch_up_report_the_prediction_that_decided_them(engine: np.ndarray) -> None:
    """A catch-up predicts many windows at once: each alert must carry the RUL and deviating sensors of
    the window that crossed the threshold (as an uninterrupted run reports), not the latest window's."""
    readings = engine_readings(engine)

    def alerts(state: EquipmentState, transitions: list[AlertTransition]) -> list[dict[str, object]]:
        return [build_alert(state, t).model_dump(exclude={"raised_at", "updated_at"}) for t in transitions]

    steady = EquipmentState.new("engine-7", TURBOFAN)
    expected: list[dict[str, object]] = []
    for i, reading in enumerate(readings):
        steady.apply_readings([reading], now=float(i))
        vectors = steady.owed_features(10)
        ruls = [(v.window_end_seq, 260.0 - v.age_cycles) for v in vectors]
        expected += alerts(steady, steady.record_predictions(ruls, 1, now=float(i)))
    assert [(a["event"], a["severity"]) for a in expected] == [("open", "warning"), ("escalate", "critical")]

    hung = EquipmentState.new("engine-7", TURBOFAN)
    hung.apply_readings(readings[:200], now=0.0)
    predict_owed(hung, now=0.0)
    hung.apply_readings(readings[200:], now=1.0)  # inference down from cycle 201 to the end, then back
    vectors = hung.owed_features(5000)
    ruls = [(v.window_end_seq, 260.0 - v.age_cycles) for v in vectors]
    got = alerts(hung, hung.record_predictions(ruls, 1, now=2.0))
    assert got == expected
    assert got[0]["predicted_rul"] != hung.predicted_rul  # the latest prediction is far lower


def test_stale_machine_is_never_ok_and_raises_its_own_alert(engine: np.ndarray) -> None:
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings(engine_readings(engine)[:40], now=100.0)
    predict_owed(state, now=100.0, rul=100.0)
    assert state.status() == "ok"
    state.apply_readings(engine_readings(engine)[40:45], now=200.0)
    state.mark_prediction_stale(now=200.0)
    snap = state.snapshot(now=200.0)
    assert (snap.status, snap.prediction_stale, snap.predictions_owed) == ("stale", True, 5)
    assert state.check_alarms(now=200.0 + TURBOFAN.stale_after_seconds - 1) == []
    opened = state.check_alarms(now=200.0 + TURBOFAN.stale_after_seconds)
    assert [(t.kind, t.event) for t in opened] == [("stale", "open")]
    assert build_alert(state, opened[0]).id == "engine-7:stale:1"
    cleared = state.record_predictions([(s, 90.0) for s in range(41, 46)], 1, now=500.0)
    assert [(t.kind, t.event) for t in cleared] == [("stale", "clear")]
    assert state.status() == "ok"


def test_owed_predictions_are_bounded_and_the_loss_is_counted() -> None:
    state = EquipmentState.new("engine-7", TURBOFAN)
    n = MAX_OWED + TURBOFAN.window + 10
    state.apply_readings([make_reading(i) for i in range(n)], now=1.0)
    snap = state.snapshot(now=1.0)
    assert snap.predictions_owed == MAX_OWED
    assert snap.predictions_skipped == n - MAX_OWED  # every reading owes one, the first ones padded
    assert state.owed_features(1)[0].window_end_seq == n - MAX_OWED


def test_a_reading_older_than_the_window_is_answered_too_late_not_duplicate(engine: np.ndarray) -> None:
    readings = engine_readings(engine)[:80]
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings(readings[:4] + readings[5:], now=1.0)  # seq 5 lost on the way
    result, _ = state.apply_readings(readings[3:6], now=2.0)
    assert result.too_late == [5]  # the window now starts at seq 51
    assert (result.accepted, result.duplicates) == (0, 2)
    assert state.readings_applied == 79


def test_a_late_reading_inside_the_window_is_placed_and_what_it_changes_is_redone(engine: np.ndarray) -> None:
    """Seqs 41-45 arrive after 46-50 were applied and predicted: same end state as in order."""
    readings = engine_readings(engine)[:80]

    def predict(state: EquipmentState) -> None:
        vectors = state.owed_features(5000)
        points = [(v.window_end_seq, 90.0 - v.age_cycles) for v in vectors]  # warning at age 40, critical 70
        state.record_predictions(points, 1, now=1.0)

    def run(batches: list[list[Reading]]) -> EquipmentState:
        state = EquipmentState.new("engine-7", TURBOFAN)
        for batch in batches:
            result, _ = state.apply_readings(batch, now=1.0)
            assert result.too_late == [] and result.accepted == len(batch)
            predict(state)
            state = decode_state("engine-7", json.loads(json.dumps(encode_state(state))))
        return state

    in_order = run([readings[:40], readings[40:50], readings[50:]])
    late = run([readings[:40], readings[45:50], readings[40:45], readings[50:]])
    assert [(p.seq, p.predicted_rul) for p in late.history] == [
        (p.seq, p.predicted_rul) for p in in_order.history
    ]
    assert replace(late.hysteresis, raised_at=0.0) == replace(in_order.hysteresis, raised_at=0.0)
    assert in_order.hysteresis.level == "critical" and in_order.hysteresis.episode == 1
    assert late.readings_applied == in_order.readings_applied == 80
    np.testing.assert_array_equal(late.recent.current_window(), in_order.recent.current_window())
    assert late.owed_features(1) == []


def test_a_late_reading_among_owed_predictions_is_owed_in_order(engine: np.ndarray) -> None:
    readings = engine_readings(engine)[:60]
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings(readings[:40] + readings[45:], now=1.0)  # inference down: everything owed
    state.mark_prediction_stale(now=1.0)
    result, _ = state.apply_readings(readings[40:45], now=2.0)
    assert result.accepted == 5 and result.too_late == []
    vectors = state.owed_features(5000)
    assert [v.window_end_seq for v in vectors] == list(range(1, 61))
    expected = unit_features(engine[:60], TURBOFAN, FeatureSpec(window=TURBOFAN.window))
    assert np.array_equal(np.array([v.values for v in vectors]), expected)


def test_alerts_are_remembered_for_reannouncement(engine: np.ndarray) -> None:
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings(engine_readings(engine)[:40], now=100.0)
    owed = [v.window_end_seq for v in state.owed_features(100)]
    transitions = state.record_predictions([(s, 10.0) for s in owed], 1, now=101.0)
    alert = build_alert(state, transitions[0])
    remember_alert(state, alert)
    back = decode_state("engine-7", json.loads(json.dumps(encode_state(state))))
    assert alerts_to_reannounce(back) == [alert]


def test_state_resending_a_whole_batch_changes_nothing(engine: np.ndarray) -> None:
    readings = engine_readings(engine)[:40]
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings(readings, now=1.0)
    before = encode_state(state)
    result, _ = state.apply_readings(readings, now=2.0)
    assert (result.accepted, result.duplicates, result.too_late) == (0, 40, [])
    after = encode_state(state)
    assert after["window"] == before["window"] and after["readings_applied"] == 40
    assert after["duplicates"] == 40


def test_state_status_alerts_and_snapshot(engine: np.ndarray) -> None:
    state = EquipmentState.new("engine-7", TURBOFAN)
    assert state.snapshot(now=0.0).status == "warming_up"
    state.apply_readings(engine_readings(engine)[:70], now=100.0)
    assert state.status() == "warming_up"  # readings but no prediction yet
    assert state.owed_features(3)[0].window_end_seq == 1
    transitions = state.record_predictions([(1, 45.0), (2, 44.0), (3, 43.0)], model_version=3, now=101.0)
    assert [(t.event, t.severity) for t in transitions] == [("open", "warning")]
    alert = build_alert(state, transitions[0])
    assert alert.id == "engine-7:rul_low:1" and alert.state == "open"
    assert len(alert.top_sensors) == 3 and alert.model_version == 3
    snap = state.snapshot(now=101.0)
    assert (snap.status, snap.predicted_rul, snap.last_seq) == ("warning", 43.0, 70)
    assert snap.open_alert_severity == "warning"
    assert snap.last_reading_at == datetime.fromtimestamp(100.0, tz=UTC)
    state.mark_prediction_stale(now=102.0)  # 4-70 still owed
    assert state.snapshot(now=102.0).prediction_stale
    assert state.snapshot(now=102.0).predictions_owed == 67
    assert [p.predicted_rul for p in state.get_history(2)] == [44.0, 43.0]
    assert state.get_history(0) == []


def test_state_silence_then_return(engine: np.ndarray) -> None:
    readings = engine_readings(engine)
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings(readings[:35], now=1000.0)
    predict_owed(state, now=1000.0)
    assert state.check_alarms(now=1000.0 + TURBOFAN.silence_after_seconds - 1) == []
    [opened] = state.check_alarms(now=1000.0 + TURBOFAN.silence_after_seconds)
    assert state.status() == "silent"
    assert build_alert(state, opened).id == "engine-7:silent:1"
    state = decode_state("engine-7", json.loads(json.dumps(encode_state(state))))
    _, transitions = state.apply_readings(readings[35:36], now=3000.0)
    assert [(t.kind, t.event) for t in transitions] == [("silent", "clear")]
    assert state.status() != "silent"


def test_state_dict_has_no_strings_the_dapr_serializer_would_rewrite(engine: np.ndarray) -> None:
    from dapr.serializers import DefaultJSONSerializer

    state = EquipmentState.new("2024-01-01", TURBOFAN)  # an id that looks like a date
    state.apply_readings([make_reading(i, eq="2024-01-01") for i in range(35)], now=1_700_000_000.5)
    state.record_predictions([(0, 30.0)], model_version=1, now=1_700_000_001.0)
    ser = DefaultJSONSerializer()
    d = encode_state(state)
    assert ser.deserialize(ser.serialize(d)) == json.loads(json.dumps(d))
    back = decode_state("2024-01-01", ser.deserialize(ser.serialize(d)))
    assert encode_state(back) == d


def test_state_rejects_foreign_readings() -> None:
    state = EquipmentState.new("engine-7", TURBOFAN)
    with pytest.raises(ValueError, match="sent to actor"):
        state.apply_readings([make_reading(1, eq="engine-8")], now=0.0)


def test_state_kept_before_settings_were_kept_starts_its_window_again(engine: np.ndarray) -> None:
    """Rows of informative sensors only (the layout before per-condition features) cannot be
    featurised: the window starts again, the counters and alerts stay."""
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings(engine_readings(engine)[:40], now=1.0)
    predict_owed(state, now=1.0)
    data = json_layout(json.loads(json.dumps(encode_state(state))))  # layout 1, then its older form
    s = len(TURBOFAN.informative_sensors)
    old_rows = RollingWindow(2 * TURBOFAN.window - 1, s)
    old_rows.extend(cmapss.sensor_matrix(engine, TURBOFAN)[:40])
    data["window"]["rows"] = old_rows.to_dict()
    back = decode_state("engine-7", data)
    assert len(back.recent) == 0 and back.readings_applied == 40 and back.history == state.history
    back.apply_readings(engine_readings(engine)[40:42], now=2.0)
    assert [v.window_end_seq for v in back.owed_features(10)] == [41, 42]
