"""A calm machine's silence check waits until the machine could turn silent; any other machine keeps
the regular period, and a machine that stops being calm gets it back at once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from apps.common.contracts import Reading
from apps.common.profiles import TURBOFAN
from apps.equipment.domain import EquipmentState
from apps.equipment.lifecycle import retire
from apps.equipment.phase import MIN_STRETCH_PERIODS, calm_check_delay, first_check_delay, is_calm
from tests.unit.equipment.test_reminder_publishes import Published, Writes, an_actor, remind
from vigil.fleet import VALUE_COLUMNS

T0 = datetime(2026, 1, 1, tzinfo=UTC)
PERIOD = 30.0
SILENCE = TURBOFAN.silence_after_seconds


def reading(seq: int, equipment_id: str = "m-1") -> Reading:
    return Reading(
        equipment_id=equipment_id,
        profile="turbofan",
        timestamp=T0 + timedelta(seconds=seq),
        seq=seq,
        values={c: float(TURBOFAN.channels.get(c, (0.0, 0.0))[0]) for c in VALUE_COLUMNS},
    )


def predicted(state: EquipmentState, seq: int, rul: float, now: float) -> None:
    state.apply_readings([reading(seq, state.equipment_id)], now)
    state.record_predictions([(seq, rul)], 1, now)


def calm_machine(now: float) -> EquipmentState:
    state = EquipmentState.new("m-1", TURBOFAN)
    predicted(state, 1, 150.0, now)
    return state


def test_a_calm_machine_is_next_checked_when_it_could_turn_silent_plus_its_phase() -> None:
    state = calm_machine(1000.0)
    assert is_calm(state)
    delay = calm_check_delay(state, 1010.0, PERIOD)
    assert delay == pytest.approx(1000.0 + SILENCE - 1010.0 + first_check_delay("m-1", PERIOD))
    # a silence is noticed at most one period after it begins, as with the regular checks
    assert 1010.0 + delay - (1000.0 + SILENCE) <= PERIOD


def test_silence_is_measured_from_when_the_host_started_listening_if_later() -> None:
    state = calm_machine(1000.0)
    delay = calm_check_delay(state, 1010.0, PERIOD, listening_since=1005.0)
    assert delay == pytest.approx(1005.0 + SILENCE - 1010.0 + first_check_delay("m-1", PERIOD))


def test_no_stretch_when_it_would_save_fewer_than_two_checks() -> None:
    state = calm_machine(1000.0)
    almost_silent = 1000.0 + SILENCE - (MIN_STRETCH_PERIODS - 1) * PERIOD
    assert calm_check_delay(state, almost_silent, PERIOD) is None


def test_a_machine_with_anything_else_to_watch_keeps_the_regular_period() -> None:
    owed = calm_machine(1000.0)
    owed.apply_readings([reading(2)], 1001.0)  # a prediction owed
    stale = calm_machine(1000.0)
    stale.apply_readings([reading(2)], 1001.0)
    stale.mark_prediction_stale(1001.0)
    warning = calm_machine(1000.0)
    for seq in range(2, 2 + TURBOFAN.thresholds.consecutive):  # type: ignore[attr-defined]
        predicted(warning, seq, 30.0, 1001.0)
    silent = calm_machine(1000.0)
    silent.check_alarms(1000.0 + SILENCE + 1)
    retired = calm_machine(1000.0)
    retire(retired, 1001.0)
    warming_up = EquipmentState.new("m-1", TURBOFAN)
    warming_up.apply_readings([reading(1)], 1000.0)
    warming_up.backlog.settle(1)  # type: ignore[union-attr]
    for name, state in {
        "owed": owed,
        "stale": stale,
        "warning": warning,
        "silent": silent,
        "retired": retired,
        "warming up": warming_up,
    }.items():
        assert not is_calm(state), name
        assert calm_check_delay(state, 1010.0, PERIOD) is None, name
    assert warning.status() == "warning" and silent.status() == "silent"


async def test_a_check_of_a_calm_machine_stretches_its_reminder(clock: list[float]) -> None:
    actor = an_actor(Published(), Writes(), clock)
    assert actor._state is not None
    actor._state.predicted_rul = 150.0  # as if predicted: calm
    heard = clock[0]
    clock[0] += 10
    await remind(actor)
    reminders = actor.register_reminder
    due, period = reminders.registered[-1]  # type: ignore[attr-defined]
    assert period == 30.0
    assert due == pytest.approx(heard + 600 - clock[0] + first_check_delay("m-1", 30.0))
    assert actor._check_stretched


async def test_an_alert_in_a_reading_restores_the_regular_period(clock: list[float]) -> None:
    actor = an_actor(Published(), Writes(), clock)
    assert actor._state is not None
    actor._state.predicted_rul = 150.0
    clock[0] += 10
    await remind(actor)
    registered = actor.register_reminder.registered  # type: ignore[attr-defined]
    assert len(registered) == 1 and actor._check_stretched

    async def low_predictions(now: float) -> list:  # type: ignore[type-arg]
        state = actor._state
        assert state is not None
        seqs = state.backlog.seqs  # type: ignore[union-attr]
        return state.record_predictions([(s, 10.0) for s in seqs], 1, now)

    actor._catch_up = low_predictions  # type: ignore[method-assign]
    for seq in range(2, 5):
        clock[0] += 1
        answer = json.loads(await actor.ingest(json.dumps([reading(seq).model_dump(mode="json")])))
        assert answer["accepted"] == 1
    assert actor._state.status() == "critical"
    assert len(registered) == 2, "one registration back to the period, then none"
    assert registered[-1] == (pytest.approx(first_check_delay("m-1", 30.0)), 30.0)
    assert not actor._check_stretched
    clock[0] += 30
    await remind(actor)  # not calm: the reminder keeps its period, nothing registered
    assert len(registered) == 2


async def test_a_failed_restore_does_not_fail_the_reading_and_is_tried_again(clock: list[float]) -> None:
    actor = an_actor(Published(), Writes(), clock)
    actor._check_stretched = True  # as loaded from the store: the schedule may be stretched
    attempts: list[float] = []

    async def sidecar_down(name: str, state: bytes, due: timedelta, period: timedelta) -> None:
        attempts.append(due.total_seconds())
        raise RuntimeError("sidecar unreachable")

    async def inference_down(now: float) -> list:  # type: ignore[type-arg]
        return []  # the readings' predictions stay owed: the machine is not calm

    actor.register_reminder = sidecar_down  # type: ignore[method-assign]
    actor._catch_up = inference_down  # type: ignore[method-assign]
    for seq in (2, 3):
        clock[0] += 1
        answer = json.loads(await actor.ingest(json.dumps([reading(seq).model_dump(mode="json")])))
        assert answer["accepted"] == 1
    assert len(attempts) == 2, "tried at each turn while it fails"
    assert actor._check_stretched
