"""Reloaded reminders: a periodic one whose fire count was never persisted does not replay its past,
and a fleet's overdue fires are spread over the period rather than fired at once."""

from __future__ import annotations

from collections import Counter

from localdapr.actors.schedule import Schedule, overdue_delay

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


def test_overdue_fires_of_a_fleet_are_spread_over_the_period() -> None:
    keys = [f"actors||EquipmentActor||sim-{i:05d}||reminder||silence-check" for i in range(10_000)]
    delays = [overdue_delay(k, 30.0) for k in keys]
    assert all(0.0 <= d < 30.0 for d in delays)
    assert overdue_delay(keys[7], 30.0) == delays[7]  # the same reminder, the same place
    per_second = Counter(int(d) for d in delays)
    assert len(per_second) == 30
    assert max(per_second.values()) < 1.3 * 10_000 / 30


def test_overdue_spread_is_capped_for_long_periods() -> None:
    assert all(overdue_delay(f"k{i}", 86_400.0) < 60.0 for i in range(1000))
