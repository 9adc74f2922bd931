"""Alerts decided reading by reading, flapping, the operator's resolve and retire, silence after a
restart, and a failure classifier's thresholds: the alarms and the EquipmentState around them."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from apps.common import cmapss
from apps.common.contracts import Reading
from apps.common.profiles import PROFILES, TURBOFAN, AlertThresholds, ProbabilityThresholds
from apps.equipment.alarms import AlertHysteresis, TimedAlarm
from apps.equipment.announce import alerts_to_reannounce, build_alert, remember_alert
from apps.equipment.codec import decode_state, encode_state, json_layout
from apps.equipment.domain import EquipmentState
from apps.equipment.lifecycle import end_alert, retire

T = AlertThresholds(warning_rul=50, critical_rul=20, consecutive=3, clear_margin=10)
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def run(h: AlertHysteresis, values: list[float], start: int = 0) -> list[tuple[str, str, int, int] | None]:
    """Reading `start + i` at T0 + (start + i) seconds, predicted `values[i]`."""
    out = []
    for i, value in enumerate(values, start):
        t = h.update(value, seq=i, at=1000.0 + i)
        out.append(None if t is None else (t.event, t.severity, t.episode, t.revision))
    return out


def test_a_flap_within_the_cooldown_reopens_the_episode_and_a_later_return_is_a_new_one() -> None:
    h = AlertHysteresis(T, reopen_within=10)
    assert run(h, [45, 45, 45])[-1] == ("open", "warning", 1, 1)
    assert run(h, [70, 70, 70], start=3)[-1] == ("clear", "warning", 1, 2)  # cleared at 1005
    assert run(h, [45, 45, 45], start=6)[-1] == ("reopen", "warning", 1, 3)  # 1008: 3 s later
    assert h.raised_at == 1002.0, "a reopen continues the episode"
    assert run(h, [15, 15, 15], start=9)[-1] == ("escalate", "critical", 1, 4)
    assert run(h, [90, 90, 90], start=12)[-1] == ("clear", "critical", 1, 5)  # 1014
    assert run(h, [45, 45, 45], start=30)[-1] == ("open", "warning", 2, 1)  # 1032: 18 s later
    back = AlertHysteresis.from_dict(json.loads(json.dumps(h.to_dict())), T, reopen_within=10)
    assert back == h


def test_a_timed_alarm_flapping_reopens_within_the_cooldown() -> None:
    s = TimedAlarm("silent", after_seconds=100, reopen_within=60)
    opened = s.check(since=0, now=100)
    assert opened is not None and (opened.event, opened.revision) == ("open", 1)
    assert s.condition_ended(now=150) is not None
    again = s.check(since=150, now=250)  # silent again 100 s after clearing: beyond the cooldown
    assert again is not None and (again.event, again.episode) == ("open", 2)
    s.condition_ended(now=260)
    s.reopen_within = 200
    flap = s.check(since=260, now=360)
    assert flap is not None and (flap.event, flap.episode, flap.revision) == ("reopen", 2, 3)
    assert flap.raised_at == 250
    assert TimedAlarm.from_dict("silent", s.to_dict(), 100, 200) == s


def test_resolving_ends_the_episode_and_a_persisting_condition_opens_a_new_one() -> None:
    h = AlertHysteresis(T, reopen_within=1000)
    run(h, [45, 45, 45])
    assert not h.end_episode(2), "not the current episode"
    assert h.end_episode(1) and h.level == "none"
    # Still low: a new episode (never a reopen of the resolved one) after `consecutive` readings.
    assert run(h, [45, 45, 45], start=3) == [None, None, ("open", "warning", 2, 1)]


def test_resolving_a_timed_alarm_restarts_its_clock() -> None:
    s = TimedAlarm("silent", after_seconds=100, reopen_within=1000)
    s.check(since=0, now=100)
    assert s.end_episode(1, now=130) and not s.active
    assert s.check(since=0, now=200) is None, "the operator resolved it: not again at once"
    again = s.check(since=0, now=230)
    assert again is not None and (again.event, again.episode) == ("open", 2)
    assert s.condition_ended(now=300) is not None and s.resolved_at is None


def test_a_failure_classifier_alerts_on_high_probability() -> None:
    p = ProbabilityThresholds(warning_probability=0.5, critical_probability=0.8, consecutive=2)
    h = AlertHysteresis(p)
    assert [e and e[0] for e in run(h, [0.1, 0.6, 0.7, 0.9, 0.95, 0.4, 0.2, 0.1])] == [
        None,
        None,
        "open",
        None,
        "escalate",
        None,
        None,
        "clear",
    ]


# --- EquipmentState: per-reading attribution, resolve, retire, silence after a restart ----------------


def readings(traj: np.ndarray, eq: str = "engine-7") -> list[Reading]:
    """The engine's cycles as readings one minute apart: seq c at T0 + c minutes."""
    return [
        Reading(
            equipment_id=eq,
            timestamp=T0 + timedelta(minutes=int(row[1])),
            seq=int(row[1]),
            values=cmapss.row_values(row),
        )
        for row in traj
    ]


@pytest.fixture(scope="module")
def engine() -> np.ndarray:
    return cmapss.load_train()[7]


def test_one_call_covering_a_whole_episode_reports_each_reading_that_decided_it(engine: np.ndarray) -> None:
    """Open, escalate and clear decided in one actor call (one batch, one catch-up): each alert names its
    own reading, its timestamp and its prediction; nothing carries the call's last prediction or time."""
    state = EquipmentState.new("engine-7", TURBOFAN)
    batch = readings(engine)[:60]
    state.apply_readings(batch, now=5000.0)
    owed = [v.window_end_seq for v in state.owed_features(100)]  # seqs 1..60: every reading owes one
    ruls = {s: (90.0 if s < 30 else 45.0 if s < 40 else 10.0 if s < 50 else 90.0) for s in owed}
    transitions = state.record_predictions([(s, ruls[s]) for s in owed], 1, now=5000.0)
    alerts = [build_alert(state, t) for t in transitions]
    assert [(a.event, a.revision, a.reading.seq if a.reading else None) for a in alerts] == [
        ("open", 1, 32),
        ("escalate", 2, 42),
        ("clear", 3, 52),
    ]
    for a in alerts:
        assert a.reading is not None and a.reading.timestamp == T0 + timedelta(minutes=a.reading.seq)
        assert a.updated_at == a.reading.timestamp and a.predicted_rul == a.reading.predicted_rul
    assert [a.predicted_rul for a in alerts] == [45.0, 10.0, 90.0]
    assert {a.raised_at for a in alerts} == {T0 + timedelta(minutes=32)}
    assert alerts[2].updated_at > alerts[0].raised_at, "cleared after it was raised"
    assert state.predicted_rul == 90.0 and alerts[0].predicted_rul != state.predicted_rul


def test_times_survive_a_round_trip_and_old_state_reads_with_receipt_times(engine: np.ndarray) -> None:
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings(readings(engine)[:40], now=5000.0)
    data = json_layout(json.loads(json.dumps(encode_state(state))))  # layout 1, then older forms of it
    back = decode_state("engine-7", data)
    assert back.backlog is not None and back.backlog.times == [
        (T0 + timedelta(minutes=s)).timestamp() for s in range(1, 41)
    ]
    del data["window"]["times"], data["backlog"]["times"]  # as written before times were kept
    old = decode_state("engine-7", data)
    assert old.backlog is not None and set(old.backlog.times) == {5000.0}
    assert set(old.recent.times) == {5000.0}


def test_a_resolved_rul_alert_ends_in_the_actor_and_a_persisting_condition_is_a_new_episode(
    engine: np.ndarray,
) -> None:
    state = EquipmentState.new("engine-7", TURBOFAN)
    rs = readings(engine)
    state.apply_readings(rs[:40], now=1.0)
    owed = [v.window_end_seq for v in state.owed_features(100)]
    [opened] = state.record_predictions([(s, 40.0) for s in owed], 1, now=1.0)
    remember_alert(state, build_alert(state, opened))
    assert state.status() == "warning"
    assert not end_alert(state, "rul_low", 2, now=2.0)
    assert end_alert(state, "rul_low", 1, now=2.0)
    assert state.status() == "ok" and alerts_to_reannounce(state) == []
    state.apply_readings(rs[40:43], now=3.0)
    [again] = state.record_predictions([(s, 40.0) for s in (41, 42, 43)], 1, now=3.0)
    assert (again.event, again.episode, again.seq) == ("open", 2, 43)


def test_a_resolved_silent_alert_is_not_raised_again_at_the_next_check(engine: np.ndarray) -> None:
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings(readings(engine)[:5], now=1000.0)
    after = TURBOFAN.silence_after_seconds
    [opened] = state.check_alarms(now=1000.0 + after)
    assert end_alert(state, "silent", opened.episode, now=2000.0)
    assert state.check_alarms(now=2001.0) == [] and state.status() != "silent"
    [again] = state.check_alarms(now=2000.0 + after)
    assert (again.kind, again.episode) == ("silent", 2)


def test_silence_is_measured_from_when_the_platform_could_hear_the_machine(engine: np.ndarray) -> None:
    """The platform was down from 1100 to 5000: the machine is not silent the moment it starts again."""
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings(readings(engine)[:5], now=1000.0)
    after = TURBOFAN.silence_after_seconds
    assert state.check_alarms(now=5000.0, listening_since=5000.0) == []
    assert state.check_alarms(now=5000.0 + after - 1, listening_since=5000.0) == []
    [silent] = state.check_alarms(now=5000.0 + after, listening_since=5000.0)
    assert silent.kind == "silent" and silent.raised_at == 5000.0 + after
    # A machine heard after the start is measured from its reading, as before.
    state.apply_readings(readings(engine)[5:6], now=6000.0)
    assert state.check_alarms(now=6000.0 + after - 1, listening_since=5000.0) == []


def test_a_retired_machine_is_not_watched_until_it_sends_again(engine: np.ndarray) -> None:
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings(readings(engine)[:40], now=1000.0)
    owed = [v.window_end_seq for v in state.owed_features(100)]
    state.record_predictions([(s, 10.0) for s in owed], 1, now=1000.0)
    assert state.status() == "critical"
    retire(state, now=1100.0)
    assert state.status() == "ok" and state.hysteresis is not None and state.hysteresis.level == "none"
    assert state.check_alarms(now=10_000_000.0) == [], "never silent while retired"
    back = decode_state("engine-7", json.loads(json.dumps(encode_state(state))))
    assert back.retired_at == 1100.0
    back.apply_readings(readings(engine)[40:41], now=2000.0)
    assert back.retired_at is None
    [silent] = back.check_alarms(now=2000.0 + TURBOFAN.silence_after_seconds)
    assert silent.kind == "silent"


def test_the_profile_files_set_the_cooldown() -> None:
    assert PROFILES["turbofan"].reopen_within_seconds == 600
    assert PROFILES["milling"].reopen_within_seconds == 300
    state = EquipmentState.new("m", replace(TURBOFAN, reopen_within_seconds=42))
    assert state.hysteresis is not None and state.hysteresis.reopen_within == 42
    assert state.silence is not None and state.silence.reopen_within == 42
