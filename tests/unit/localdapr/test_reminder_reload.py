"""Reloaded reminders: a periodic one whose fire count was never persisted does not replay its past."""

from __future__ import annotations

from localdapr.actors.schedule import Schedule

NOW = 1_700_000_000.0


def test_unpersisted_count_skips_to_one_fire_due_now() -> None:
    s = Schedule.parse("5s", "30s", "", NOW)  # fired 0: as registered, as stored
    s.skip_missed(NOW + 5 + 30 * 100 + 7)  # reloaded 100 periods after its first fire
    assert s.next_fire() == NOW + 5 + 30 * 100
    s.fired += 1
    assert s.next_fire() == NOW + 5 + 30 * 101


def test_a_reminder_not_yet_due_is_left_alone() -> None:
    s = Schedule.parse("5s", "30s", "", NOW)
    s.skip_missed(NOW + 1)
    assert s.fired == 0
    assert s.next_fire() == NOW + 5


def test_a_bounded_reminder_that_never_fired_keeps_its_fires() -> None:
    # Its count is persisted on every fire, so 0 means it never fired: all three are still owed.
    s = Schedule.parse("0s", "R3/PT1S", "", NOW)
    s.skip_missed(NOW + 50)
    assert s.next_fire() == NOW
