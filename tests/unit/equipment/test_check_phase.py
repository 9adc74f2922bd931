"""The silence check's first due time: spread over the period by machine id, stable per id."""

from __future__ import annotations

from collections import Counter

from apps.equipment.phase import first_check_delay


def test_delay_is_within_the_period_and_stable_per_id() -> None:
    delays = [first_check_delay(f"sim-{i:05d}", 30.0) for i in range(2000)]
    assert all(0.0 < d <= 30.0 for d in delays)
    assert first_check_delay("sim-00042", 30.0) == delays[42]
    assert first_check_delay("sim-00042", 60.0) == 2 * delays[42]


def test_a_fleet_started_together_is_spread_over_the_period() -> None:
    # 10,000 machines registered in the same second: no second of the 30 s period gets more than
    # 1.3x its even share (333) of first checks, and every second gets some.
    per_second = Counter(int(first_check_delay(f"sim-{i:05d}", 30.0)) for i in range(10_000))
    assert len(per_second) == 30
    assert max(per_second.values()) < 1.3 * 10_000 / 30
    assert min(per_second.values()) > 0.7 * 10_000 / 30
