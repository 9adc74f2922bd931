"""bindings.cron schedules: the syntax daprd's robfig-derived parser accepts, and the fire times it picks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from localdapr.bindings.schedule import CronError, CronSchedule, Every, parse

# Wednesday 1 May 2024, 10:00:03.250 UTC
START = datetime(2024, 5, 1, 10, 0, 3, 250000, tzinfo=UTC).timestamp()


def utc(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[arg-type,misc]


def fires(spec: str, count: int, after: float = START) -> list[float]:
    schedule = parse(spec)
    out: list[float] = []
    for _ in range(count):
        nxt = schedule.next(after)
        assert nxt is not None
        out.append(nxt)
        after = nxt
    return out


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # six fields: seconds first
        ("CRON_TZ=UTC */5 * * * * *", [utc(2024, 5, 1, 10, 0, 5), utc(2024, 5, 1, 10, 0, 10)]),
        ("CRON_TZ=UTC 30 * * * * *", [utc(2024, 5, 1, 10, 0, 30), utc(2024, 5, 1, 10, 1, 30)]),
        ("CRON_TZ=UTC 0 */15 * * * *", [utc(2024, 5, 1, 10, 15), utc(2024, 5, 1, 10, 30)]),
        # "N/step" is "N-max/step"
        ("CRON_TZ=UTC 1/20 * * * * *", [utc(2024, 5, 1, 10, 0, 21), utc(2024, 5, 1, 10, 0, 41)]),
        # lists and ranges, hours 3-6 and 20-23
        ("CRON_TZ=UTC 0 30 3-6,20-23 * * *", [utc(2024, 5, 1, 20, 30), utc(2024, 5, 1, 21, 30)]),
        # five fields: the seconds field defaults to 0
        ("CRON_TZ=UTC 0 12 * * *", [utc(2024, 5, 1, 12), utc(2024, 5, 2, 12)]),
        # names, case-insensitive; Sunday is 0
        ("CRON_TZ=UTC 0 0 9 * * mon-FRI", [utc(2024, 5, 2, 9), utc(2024, 5, 3, 9)]),
        ("CRON_TZ=UTC 0 0 0 1 JUN,dec *", [utc(2024, 6, 1), utc(2024, 12, 1)]),
        ("CRON_TZ=UTC 0 0 0 * * 0", [utc(2024, 5, 5), utc(2024, 5, 12)]),
        # "?" is "*"
        ("CRON_TZ=UTC 0 0 0 ? * 6", [utc(2024, 5, 4), utc(2024, 5, 11)]),
        # day of month and day of week both restricted: either matches (robfig's rule)
        ("CRON_TZ=UTC 0 0 0 13 * FRI", [utc(2024, 5, 3), utc(2024, 5, 10), utc(2024, 5, 13)]),
        # one of them a star: both must match
        ("CRON_TZ=UTC 0 0 0 * * FRI", [utc(2024, 5, 3), utc(2024, 5, 10)]),
        # a star with a step > 1 no longer counts as a star: either matches
        ("CRON_TZ=UTC 0 0 0 */10 * MON", [utc(2024, 5, 6), utc(2024, 5, 11), utc(2024, 5, 13)]),
        # descriptors fire at the start of the period, not counted from the binding's start
        ("CRON_TZ=UTC @hourly", [utc(2024, 5, 1, 11), utc(2024, 5, 1, 12)]),
        ("CRON_TZ=UTC @daily", [utc(2024, 5, 2), utc(2024, 5, 3)]),
        ("CRON_TZ=UTC @midnight", [utc(2024, 5, 2)]),
        ("CRON_TZ=UTC @weekly", [utc(2024, 5, 5), utc(2024, 5, 12)]),
        ("CRON_TZ=UTC @monthly", [utc(2024, 6, 1), utc(2024, 7, 1)]),
        ("CRON_TZ=UTC @yearly", [utc(2025, 1, 1)]),
        ("TZ=UTC @annually", [utc(2025, 1, 1)]),
        # a time zone prefix: 04:30 in New York is 08:30 UTC in May (EDT) and 09:30 in January (EST)
        ("CRON_TZ=America/New_York 0 30 4 * * *", [utc(2024, 5, 2, 8, 30), utc(2024, 5, 3, 8, 30)]),
        # day 31 skips the months without one
        ("CRON_TZ=UTC 0 0 0 31 * *", [utc(2024, 5, 31), utc(2024, 7, 31), utc(2024, 8, 31)]),
        # 29 February: the next leap year
        ("CRON_TZ=UTC 0 0 0 29 2 *", [utc(2028, 2, 29)]),
    ],
)
def test_fire_times(spec: str, expected: list[float]) -> None:
    assert fires(spec, len(expected)) == expected


def test_time_zone_follows_daylight_saving() -> None:
    january = utc(2024, 1, 10)
    assert fires("CRON_TZ=America/New_York 0 30 4 * * *", 1, january) == [utc(2024, 1, 10, 9, 30)]


def test_no_prefix_is_the_hosts_local_time() -> None:
    local = datetime(2024, 5, 1, 10, 0, 3).timestamp()
    assert fires("0 0 12 * * *", 1, local) == [datetime(2024, 5, 1, 12).timestamp()]


def test_next_is_strictly_after() -> None:
    on_the_dot = utc(2024, 5, 1, 10, 0, 5)
    assert fires("CRON_TZ=UTC */5 * * * * *", 1, on_the_dot) == [utc(2024, 5, 1, 10, 0, 10)]


def test_impossible_date_never_fires_and_gives_up_quickly() -> None:
    schedule = parse("0 0 0 30 2 *")
    assert schedule.next(START) is None  # a search without an end would run into the test's timeout


@pytest.mark.parametrize(
    ("spec", "delay_ms"),
    [
        ("@every 15s", 15_000),
        ("@every 1m30s", 90_000),
        ("@every 1h", 3_600_000),
        ("@every 500ms", 500),
        ("@every 1.5ms", 1),  # truncated to whole milliseconds
        ("@every 100us", 1),  # below 1 ms: 1 ms
        ("@every 0", 1),
        ("CRON_TZ=UTC @every 2s", 2_000),
    ],
)
def test_every(spec: str, delay_ms: int) -> None:
    schedule = parse(spec)
    assert schedule == Every(delay_ms)
    # counted from the previous fire rounded down to the millisecond
    assert schedule.next(100.0004) == pytest.approx(100.0 + delay_ms / 1000)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty spec string"),
        ("* * * *", "expected 5 to 6 fields, found 4: [* * * *]"),
        ("* * * * * * *", "expected 5 to 6 fields, found 7"),
        ("60 * * * * *", "end of range (60) above maximum (59): 60"),
        ("* * 24 * * *", "end of range (24) above maximum (23): 24"),
        ("* * * 0 * *", "beginning of range (0) below minimum (1): 0"),
        ("* * * * 13 *", "end of range (13) above maximum (12): 13"),
        ("* * * * * 7", "end of range (7) above maximum (6): 7"),
        ("5-1 * * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
        ("*/0 * * * * *", "step of range should be a positive number: */0"),
        ("1-2-3 * * * * *", "too many hyphens: 1-2-3"),
        ("1/2/3 * * * * *", "too many slashes: 1/2/3"),
        ("x * * * * *", "failed to parse int from x"),
        ("1_0 * * * * *", "failed to parse int from 1_0"),
        ("* * * * * funday", "failed to parse int from funday"),
        ("@fortnightly", "unrecognized descriptor: @fortnightly"),
        ("@Daily", "unrecognized descriptor: @Daily"),
        ("@every", "unrecognized descriptor: @every"),
        ("@every 30", 'missing unit in duration "30"'),
        ("@every soon", 'invalid duration "soon"'),
        ("@every  15s", "invalid duration"),
        ("CRON_TZ=Nowhere/City * * * * *", "provided bad location Nowhere/City"),
        ("CRON_TZ=UTC", "timezone prefix CRON_TZ=UTC is not followed by a schedule"),
    ],
)
def test_refused(spec: str, message: str) -> None:
    with pytest.raises(CronError) as info:
        parse(spec)
    assert message in str(info.value)


def test_parsed_fields() -> None:
    schedule = parse("0 */20 9-17 * JAN-MAR 1-5")
    assert isinstance(schedule, CronSchedule)
    assert schedule.seconds == {0}
    assert schedule.minutes == {0, 20, 40}
    assert schedule.hours == set(range(9, 18))
    assert schedule.months == {1, 2, 3}
    assert schedule.dow == {1, 2, 3, 4, 5}
    assert schedule.dom_star and not schedule.dow_star
    assert schedule.tz is None
