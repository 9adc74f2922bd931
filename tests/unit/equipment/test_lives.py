"""A failure, maintenance or replacement event starts a machine's new life in its actor (domain.py
`start_life`): window, age and hysteresis start again, the old life's alerts end as resolved."""

from __future__ import annotations

import json

import numpy as np
import pytest

from apps.common import cmapss
from apps.common.profiles import TURBOFAN
from apps.equipment.announce import build_alert, remember_alert
from apps.equipment.codec import decode_state, encode_state
from apps.equipment.domain import EquipmentState
from apps.equipment.lifecycle import start_life
from apps.equipment.sequence import APPLIED_HORIZON, SequenceTracker
from apps.training.quality import fit_spec, unit_features
from tests.unit.equipment.test_domain import engine_readings, make_reading, predict_owed


@pytest.fixture(scope="module")
def engines() -> dict[int, np.ndarray]:
    return cmapss.load_train()


def renumbered(traj: np.ndarray, first_seq: int) -> np.ndarray:
    """The trajectory as another life of a machine: its seqs continue from `first_seq`."""
    out = traj.copy()
    out[:, 1] = np.arange(first_seq, first_seq + len(traj))
    return out


def as_training_life(traj: np.ndarray) -> np.ndarray:
    """What apps/training/runs.py `trajectory` makes of a life: cycle 1, 2, ... since the life began."""
    out = traj.copy()
    out[:, 1] = np.arange(1, len(traj) + 1)
    return out


def round_trip(state: EquipmentState) -> EquipmentState:
    return decode_state(state.equipment_id, json.loads(json.dumps(encode_state(state))))


def test_a_new_life_gets_the_features_training_computes_for_it(engines: dict[int, np.ndarray]) -> None:
    """Engine 7 runs 50 readings, is maintained, and goes on as engine 8's data: every feature of the new
    life (ages from its start, first windows padded with its first reading) equals training's."""
    spec = fit_spec({u: engines[u] for u in range(1, 21)}, TURBOFAN)
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings(engine_readings(engines[7][:50]), now=1000.0)
    predict_owed(state, now=1000.0, spec=spec)
    assert start_life(state, "maintenance", 50, "", now=1001.0) == []
    state = round_trip(state)
    second = renumbered(engines[8], 51)
    vectors = []
    for start in range(0, len(second), 17):
        state.apply_readings(engine_readings(second[start : start + 17]), now=1002.0 + start)
        vectors += predict_owed(state, now=1002.0 + start, spec=spec)
        state = round_trip(state)
    expected = unit_features(as_training_life(engines[8]), TURBOFAN, spec)
    assert np.array_equal(np.array([v.values for v in vectors]), expected)
    assert [v.age_cycles for v in vectors] == list(range(1, len(second) + 1))
    snap = state.snapshot(now=2000.0)
    assert (snap.life, snap.life_readings, snap.readings_applied) == (1, len(second), 50 + len(second))
    np.testing.assert_array_equal(
        state.baseline, cmapss.sensor_matrix(engines[8], TURBOFAN)[: TURBOFAN.window]
    )


def test_the_old_lifes_alerts_end_resolved_with_the_event_as_reason(engines: dict[int, np.ndarray]) -> None:
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings(engine_readings(engines[7])[:70], now=100.0)
    opened = state.record_predictions([(1, 45.0), (2, 44.0), (3, 43.0)], model_version=3, now=101.0)
    for t in opened:
        remember_alert(state, build_alert(state, t))
    assert state.status() == "warning"

    [ended] = start_life(state, "maintenance", 70, "HPC wash", now=200.0) or []
    alert = build_alert(state, ended)
    assert (alert.id, alert.event, alert.state, alert.revision) == (
        "engine-7:rul_low:1",
        "resolve",
        "cleared",
        2,
    )
    assert "resolved: maintenance after seq 70: HPC wash" in alert.message
    assert state.status() == "warming_up"  # no prediction of the new life yet
    assert state.snapshot(now=200.0).open_alert_severity is None
    assert (state.life, state.life_readings, state.predictions_owed) == (1, 0, 0)

    # The new life's low predictions open a new episode (a new alert id), after `consecutive` of them.
    state.apply_readings([make_reading(s) for s in range(71, 75)], now=300.0)
    assert predict_owed(state, now=300.0, limit=2, rul=10.0) and state.status() == "ok"  # 2 of 3
    transitions = state.record_predictions([(73, 10.0)], model_version=3, now=301.0)
    assert [(t.kind, t.event, t.episode, t.severity) for t in transitions] == [
        ("rul_low", "open", 2, "critical")
    ]


def test_silence_and_stale_episodes_end_too(engines: dict[int, np.ndarray]) -> None:
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings(engine_readings(engines[7])[:10], now=0.0)
    state.mark_prediction_stale(now=0.0)
    late = TURBOFAN.silence_after_seconds + TURBOFAN.stale_after_seconds
    assert {t.kind for t in state.check_alarms(now=late)} == {"silent", "stale"}
    ended = start_life(state, "replaced", 10, "", now=late + 1) or []
    assert sorted((t.kind, t.event) for t in ended) == [("silent", "resolve"), ("stale", "resolve")]
    assert state.status() == "warming_up" and not state.prediction_stale
    # Silence counts again from the event, not from the last reading.
    assert state.check_alarms(now=late + 2) == []
    assert [t.kind for t in state.check_alarms(now=late + 1 + TURBOFAN.silence_after_seconds)] == ["silent"]


def test_the_same_event_twice_changes_nothing(engines: dict[int, np.ndarray]) -> None:
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings(engine_readings(engines[7])[:30], now=0.0)
    assert start_life(state, "maintenance", 30, "", now=1.0) == []
    before = encode_state(state)
    assert start_life(state, "maintenance", 30, "", now=2.0) is None
    assert start_life(state, "failure", 12, "", now=3.0) is None  # older than this life: already past
    assert encode_state(state) == before


def test_readings_up_to_the_events_seq_belong_to_the_old_life(engines: dict[int, np.ndarray]) -> None:
    """The event names seq 60 while the actor applied up to 50: 51-60 arriving later are the old life's
    (answered too late, never in the new window); resends of applied ones stay duplicates."""
    readings = engine_readings(engines[7])
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings(readings[:50], now=0.0)
    start_life(state, "maintenance", 60, "", now=1.0)
    result, _ = state.apply_readings([readings[54], readings[39], readings[59], readings[60]], now=2.0)
    assert (result.accepted, result.duplicates, result.too_late) == (1, 1, [55, 60])
    assert list(state.recent.seqs) == [61] and state.life_readings == 1
    assert state.owed_features(5)[0].age_cycles == 1.0


def test_an_event_recorded_late_keeps_the_new_lifes_readings(engines: dict[int, np.ndarray]) -> None:
    """Maintenance after seq 55 recorded when 60 readings were applied: 56-60 are the new life's first
    five, predicted again with the new life's features (the old life's predictions of them dropped)."""
    spec = fit_spec({u: engines[u] for u in range(1, 21)}, TURBOFAN)
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings(engine_readings(engines[7][:60]), now=0.0)
    predict_owed(state, now=0.0, spec=spec)
    assert start_life(state, "maintenance", 55, "", now=1.0) == []
    assert state.life_readings == 5 and [p.seq for p in state.history][-1] == 55
    vectors = predict_owed(state, now=2.0, spec=spec)
    assert [v.window_end_seq for v in vectors] == [56, 57, 58, 59, 60]
    expected = unit_features(as_training_life(engines[7][55:60]), TURBOFAN, spec)
    assert np.array_equal(np.array([v.values for v in vectors]), expected)


def test_a_failure_leaves_the_machine_down_until_it_sends_again(engines: dict[int, np.ndarray]) -> None:
    readings = engine_readings(engines[7])
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings(readings[:20], now=0.0)
    start_life(state, "failure", 20, "blade loss", now=1.0)
    state = round_trip(state)
    assert state.snapshot(now=1.0).status == "down"
    assert state.check_alarms(now=10 * TURBOFAN.silence_after_seconds) == []  # down is not silent
    state.apply_readings(readings[20:21], now=100.0)
    assert state.status() == "warming_up" and state.down_since is None


def test_applied_after_counts_the_applied_seqs_above_one() -> None:
    tracker = SequenceTracker()
    for seq in [1, 2, 3, 5, 6, 9]:
        tracker.mark_applied(seq)
    assert [tracker.applied_after(s) for s in (0, 3, 5, 8, 9, 20)] == [6, 3, 2, 1, 0, 0]
    tracker.mark_applied(9 + 2 * APPLIED_HORIZON)
    # Within the horizon the bitmap knows (only the newest applied); beyond it, taken as applied.
    assert tracker.applied_after(9) == 1 + (2 * APPLIED_HORIZON - APPLIED_HORIZON)
