"""Pure parts of the localdapr actor runtime: the hash ring, schedule parsing and fire-time math,
the /dapr/config reader, reminder records and callback bodies, and turn-based locking."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import pytest

from localdapr.actors.config import ActorConfig
from localdapr.actors.placement import HashRing
from localdapr.actors.reminders import Registration, reminder_key
from localdapr.actors.schedule import (
    Schedule,
    ScheduleError,
    parse_due_time,
    parse_iso_duration,
    parse_period,
    parse_ttl,
)
from localdapr.actors.turns import ActorEntry
from localdapr.errors import DaprError

NOW = 1_700_000_000.0


# ---------------------------------------------------------------------------------- placement
def test_ring_is_deterministic_and_independent_of_host_order() -> None:
    a = HashRing(["h1", "h2", "h3"])
    b = HashRing(["h3", "h1", "h2"])
    assert all(a.lookup(f"id-{i}") == b.lookup(f"id-{i}") for i in range(500))


def test_empty_ring_has_no_owner() -> None:
    assert HashRing([]).lookup("x") is None


@pytest.mark.parametrize("seed", range(20))
def test_two_hosts_share_ids_evenly(seed: int) -> None:
    # Instance ids are random per run, so check many random pairs: neither gets under a quarter.
    hosts = [uuid.UUID(int=seed * 7919 + i).hex[:8] for i in range(2)]
    counts = Counter(HashRing(hosts).lookup(f"m-{i}") for i in range(200))
    assert min(counts[h] for h in hosts) >= 50, counts


def test_removing_a_host_moves_only_its_ids() -> None:
    before = HashRing(["a", "b", "c"])
    after = HashRing(["a", "c"])
    for i in range(1000):
        key = f"id-{i}"
        if before.lookup(key) != "b":
            assert after.lookup(key) == before.lookup(key)
        else:
            assert after.lookup(key) in ("a", "c")


# ---------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("PT10S", 10.0),
        ("PT1M30S", 90.0),
        ("PT0.5S", 0.5),
        ("P1D", 86400.0),
        ("P1W", 604800.0),
        ("PT2H", 7200.0),
    ],
)
def test_iso_durations(text: str, seconds: float) -> None:
    assert parse_iso_duration(text) == seconds


@pytest.mark.parametrize("text", ["P", "PT", "10s", "R5/PT1S", ""])
def test_not_iso_durations(text: str) -> None:
    assert parse_iso_duration(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", (None, None)),
        ("1m", (60.0, None)),
        ("0h0m2s0ms0μs", (2.0, None)),  # the SDK's long form
        ("PT10S", (10.0, None)),
        ("R5/PT1S", (1.0, 5)),
        ("R/PT1S", (1.0, None)),
        ("R2/1s", (1.0, 2)),
        ("0s", (None, None)),  # zero period = one-shot
    ],
)
def test_periods(text: str, expected: tuple[float | None, int | None]) -> None:
    assert parse_period(text) == expected


@pytest.mark.parametrize("text", ["often", "R-1/PT1S", "-1s", "RX/PT1S"])
def test_bad_periods(text: str) -> None:
    with pytest.raises(ScheduleError, match="period"):
        parse_period(text)


def test_due_time_forms() -> None:
    assert parse_due_time("", NOW) == NOW
    assert parse_due_time("0h0m5s0ms0μs", NOW) == NOW + 5
    assert parse_due_time("PT1M", NOW) == NOW + 60
    assert parse_due_time("2023-11-14T22:13:30Z", NOW) == NOW + 10
    with pytest.raises(ScheduleError, match="dueTime"):
        parse_due_time("soon", NOW)


def test_ttl_forms() -> None:
    assert parse_ttl("", NOW) is None
    assert parse_ttl("10s", NOW) == NOW + 10
    assert parse_ttl("PT10S", NOW) == NOW + 10
    assert parse_ttl("2023-11-14T22:13:30+00:00", NOW) == NOW + 10


# ---------------------------------------------------------------------------------- schedule math
def fire_all(s: Schedule, limit: int = 100) -> list[float]:
    times = []
    while (when := s.next_fire()) is not None and len(times) < limit:
        times.append(when - NOW)
        s.fired += 1
    return times


def test_one_shot_fires_once_at_due_time() -> None:
    assert fire_all(Schedule.parse("3s", "", "", NOW)) == [3.0]


def test_periodic_fires_every_period_forever() -> None:
    assert fire_all(Schedule.parse("1s", "2s", "", NOW), limit=4) == [1.0, 3.0, 5.0, 7.0]


def test_repetitions_count_every_fire() -> None:
    assert fire_all(Schedule.parse("0s", "R3/PT1S", "", NOW)) == [0.0, 1.0, 2.0]


def test_ttl_stops_recurrence() -> None:
    assert fire_all(Schedule.parse("0s", "1s", "2500ms", NOW)) == [0.0, 1.0, 2.0]


def test_ttl_before_due_time_is_refused() -> None:
    with pytest.raises(ScheduleError, match="ttl"):
        Schedule.parse("10s", "1s", "5s", NOW)


def test_missed_fires_are_skipped_not_replayed() -> None:
    s = Schedule.parse("0s", "1s", "", NOW)
    s.fired = 1
    s.skip_missed(NOW + 10.5)  # the sidecar was down for ten periods
    assert s.next_fire() == NOW + 10
    s.fired += 1
    assert s.next_fire() == NOW + 11


# ---------------------------------------------------------------------------------- config, records
def test_dapr_config_from_the_sdk() -> None:
    cfg = ActorConfig.from_json(
        {
            "actorIdleTimeout": "1h0m0s0ms0μs",
            "actorScanInterval": "0h0m30s0ms0μs",
            "drainRebalancedActors": True,
            "reentrancy": {"enabled": True, "maxStackDepth": 8},
            "entitiesConfig": [{"entities": ["Fast"], "actorIdleTimeout": "0h0m1s0ms0μs"}],
            "entities": ["Pump", "Fast"],
        }
    )
    assert cfg.entities == ["Pump", "Fast"]
    assert cfg.scan_interval == 30.0
    assert cfg.for_type("Pump").idle_timeout == 3600.0
    assert cfg.for_type("Pump").reentrancy and cfg.for_type("Pump").max_stack_depth == 8
    assert cfg.for_type("Fast").idle_timeout == 1.0 and cfg.for_type("Fast").reentrancy


def test_reminder_record_round_trip_and_bodies() -> None:
    body = {"reminderName": "r", "dueTime": "0h0m5s0ms0μs", "period": None, "data": "aGk="}
    reg = Registration.from_request("Pump", "p-1", "r", body, now=NOW)
    assert reg.key == reminder_key("Pump", "p-1", "r") == "actors||Pump||p-1||reminder||r"
    assert reg.reminder_body() == {"data": "aGk=", "dueTime": "0h0m5s0ms0μs", "period": ""}
    again = Registration.from_record(reg.to_record())
    assert again.reminder_body() == reg.reminder_body()
    assert again.schedule == reg.schedule


def test_reminder_without_data_omits_the_key_and_timer_always_has_data() -> None:
    reg = Registration.from_request("T", "1", "r", {"dueTime": "1s", "period": "1s"}, now=NOW)
    assert "data" not in reg.reminder_body()
    timer = Registration.from_request(
        "T", "1", "t", {"callback": "tick", "dueTime": "1s", "period": "1s"}, now=NOW
    )
    assert timer.timer_body() == {"callback": "tick", "data": None, "dueTime": "1s", "period": "1s"}


# ---------------------------------------------------------------------------------- turns
async def test_turns_serialise_one_actor() -> None:
    entry = ActorEntry("T", "1")
    inside = 0
    peak = 0

    async def call() -> None:
        nonlocal inside, peak
        async with entry.turn():
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.01)
            inside -= 1

    await asyncio.gather(*(call() for _ in range(10)))
    assert peak == 1


async def test_reentrant_call_enters_and_depth_is_bounded() -> None:
    entry = ActorEntry("T", "1")
    async with entry.turn("chain", max_depth=2):
        async with entry.turn("chain", max_depth=2):
            with pytest.raises(DaprError) as err:
                async with entry.turn("chain", max_depth=2):
                    pass
            assert err.value.code == "ERR_ACTOR_MAX_STACK_DEPTH_EXCEEDED"
        # A call from another chain waits for the turn instead of entering.
        other = asyncio.ensure_future(entry.turn("other").__aenter__())
        await asyncio.sleep(0.01)
        assert not other.done()
    await other
