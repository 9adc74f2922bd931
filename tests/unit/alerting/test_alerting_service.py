"""AlertingService over the in-memory repository: handlers, dedupe, supersession, retries, dead letters."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

import pytest

from apps.alerting.domain import Envelope, dead_letter_from
from apps.alerting.errors import AlertClosed, AlertNotFound
from apps.alerting.lifecycle import AlertFilter
from apps.alerting.service import AlertingService, Outcome
from apps.alerting.store import DEAD_LETTER_SHARDS, INDEX_SHARDS, dead_letter_shard, shard_of
from tests.unit.alerting.fakes import FakeMachines, InMemoryAlertingRepository
from tests.unit.alerting.helpers import alert, at, snapshot


@pytest.fixture
def repo() -> InMemoryAlertingRepository:
    return InMemoryAlertingRepository()


def ticking(start: float = 1000) -> Callable[[], datetime]:
    """A clock one second later at each reading: dead letters of several shards are ordered by it."""
    seconds = itertools.count(start)
    return lambda: at(next(seconds))


@pytest.fixture
def service(repo: InMemoryAlertingRepository) -> AlertingService:
    return AlertingService(repo, FakeMachines(), max_alerts=100, clock=ticking())


def envelope(data: object, event_id: str | None = "ev-1") -> Envelope:
    return Envelope(data, event_id, "equipment", "alerts")


async def test_alert_lifecycle_through_the_handler(
    service: AlertingService, repo: InMemoryAlertingRepository
) -> None:
    for e in (alert("open", updated=0), alert("escalate", severity="critical", updated=5)):
        assert await service.on_alert(envelope(e.model_dump(mode="json")), "alerts") == Outcome.SUCCESS
    (record,) = await service.list_alerts(AlertFilter())
    assert record.severity == "critical" and record.state == "open"
    acked = await service.acknowledge(record.id, "ops")
    assert acked.state == "acknowledged" and acked.acknowledged_by == "ops"
    assert acked.acknowledged_at == acked.updated_at == acked.history[-1].at, "the ack moved updated_at"
    await service.apply_alert(alert("clear", severity="critical", updated=9))
    assert (await service.get_alert(record.id)).state == "cleared"
    with pytest.raises(AlertClosed):
        await service.acknowledge(record.id, "ops")
    with pytest.raises(AlertNotFound):
        await service.acknowledge("engine-001:rul_low:99", "ops")
    assert [
        (n.alert_id, n.action, n.severity) for n in sorted(repo.notifications(), key=lambda n: n.created_at)
    ] == [
        (record.id, "open", "warning"),
        (record.id, "escalate", "critical"),
        (record.id, "clear", "critical"),
    ], "one notification per real change, none for the acknowledgement"


async def test_redelivery_is_idempotent_and_writes_nothing(
    service: AlertingService, repo: InMemoryAlertingRepository
) -> None:
    e = alert("open")
    await service.apply_alert(e)
    writes = repo.writes
    for _ in range(3):
        await service.apply_alert(e)
    assert repo.writes == writes and len(repo.notifications()) == 1
    assert len(await service.list_alerts(AlertFilter())) == 1


async def test_concurrent_deliveries_of_one_episode_converge(service: AlertingService) -> None:
    events = [alert("open", updated=0), alert("escalate", severity="critical", updated=5)] * 5
    await asyncio.gather(*(service.apply_alert(e) for e in events))
    (record,) = await service.list_alerts(AlertFilter())
    assert record.severity == "critical" and record.state == "open"


async def test_a_new_episode_supersedes_an_open_one_and_a_late_old_event_stays_cleared(
    service: AlertingService,
) -> None:
    await service.apply_alert(alert("open", episode=1, updated=0))
    await service.apply_alert(alert("open", episode=2, raised=50, updated=50))  # clear of 1 lost/late
    one = await service.get_alert("engine-001:rul_low:1")
    assert (
        one.state == "cleared"
        and one.cleared_reason == "superseded by episode 2"
        and one.cleared_at == at(50)
    )
    await service.apply_alert(alert("escalate", episode=1, severity="critical", updated=10))  # very late
    assert (await service.get_alert("engine-001:rul_low:1")).state == "cleared"
    await service.apply_alert(alert("clear", episode=1, updated=20))
    one = await service.get_alert("engine-001:rul_low:1")
    assert one.cleared_reason == "cleared" and one.cleared_at == at(20), "the actor's own clear wins"
    assert [a.id for a in await service.list_alerts(AlertFilter(state="open"))] == ["engine-001:rul_low:2"]


async def test_late_event_of_a_replaced_episode_is_stored_cleared(service: AlertingService) -> None:
    await service.apply_alert(alert("open", episode=3, raised=90, updated=90))
    record = await service.apply_alert(alert("open", episode=2, raised=40, updated=40))
    assert record.state == "cleared" and record.cleared_reason == "superseded by episode 3"


async def test_other_machines_and_kinds_are_not_superseded(service: AlertingService) -> None:
    await service.apply_alert(alert("open", equipment_id="a", episode=1))
    await service.apply_alert(alert("open", equipment_id="a", kind="silent", episode=1))
    await service.apply_alert(alert("open", equipment_id="b", episode=2))
    assert len(await service.list_alerts(AlertFilter(state="open"))) == 3


async def test_conflicts_are_retried(service: AlertingService, repo: InMemoryAlertingRepository) -> None:
    repo.conflicts_to_inject = 3
    await service.apply_alert(alert("open"))
    repo.conflicts_to_inject = 2
    await service.fleet.record(snapshot())
    repo.conflicts_to_inject = 2
    assert await service.on_dead_letter(envelope({"x": 1}), "readings-deadletter") == Outcome.SUCCESS
    assert len(await service.letters.newest(10)) == 1
    assert len(await service.list_alerts(AlertFilter())) == 1
    assert (await service.fleet.view()).total == 1


async def test_endless_conflicts_raise_so_dapr_retries(repo: InMemoryAlertingRepository) -> None:
    service = AlertingService(repo, FakeMachines(), max_conflict_retries=3)
    repo.conflicts_to_inject = 10
    with pytest.raises(RuntimeError, match="etag conflicts"):
        await service.apply_alert(alert("open"))


async def test_writers_on_distinct_machines_do_not_collide(repo: InMemoryAlertingRepository) -> None:
    """A fleet starting up: one replica's writers queue per shard instead of racing on its etag."""
    service = AlertingService(repo, FakeMachines(), max_conflict_retries=1)
    eids = [f"m-{i:03d}" for i in range(200)]
    letters = [envelope({"reason": "bad", "reading": {"equipment_id": e}}, f"ev-{e}") for e in eids]
    await asyncio.gather(
        *(service.fleet.record(snapshot(e)) for e in eids),
        *(service.apply_alert(alert("open", equipment_id=e)) for e in eids),
        *(service.on_dead_letter(d, "readings-deadletter") for d in letters),
    )
    assert repo.conflicts == 0
    assert (await service.fleet.view()).total == 200 and len(await service.list_alerts(AlertFilter())) == 200
    assert len(await service.letters.newest(1000)) == 200


async def test_replicas_racing_on_shared_shards_converge(repo: InMemoryAlertingRepository) -> None:
    replicas = [AlertingService(repo, FakeMachines()) for _ in range(3)]
    eids = [f"m-{i:03d}" for i in range(100)]
    events = [alert("open", equipment_id=e) for e in eids] + [
        alert("escalate", equipment_id=e, severity="critical", updated=5) for e in eids
    ]
    await asyncio.gather(
        *(replicas[i % 3].apply_alert(e) for i, e in enumerate(events * 2)),
        *(replicas[i % 3].fleet.record(snapshot(e)) for i, e in enumerate(eids * 2)),
    )
    assert repo.conflicts > 0, "the replicas did race"
    alerts = await replicas[0].list_alerts(AlertFilter())
    assert sorted(a.equipment_id for a in alerts) == eids
    assert {(a.severity, a.state) for a in alerts} == {("critical", "open")}
    assert sorted(m.equipment_id for m in (await replicas[1].fleet.view()).machines) == eids


async def test_each_index_shard_forgets_its_oldest_cleared_alerts(repo: InMemoryAlertingRepository) -> None:
    service = AlertingService(repo, FakeMachines(), max_alerts=2 * INDEX_SHARDS)  # 2 per shard
    assert shard_of("a") != shard_of("b")
    await service.apply_alert(alert("open", equipment_id="b"))
    for episode in (1, 2, 3, 4):  # each new episode supersedes (clears) the one before
        t = 10.0 * episode
        await service.apply_alert(alert("open", equipment_id="a", episode=episode, raised=t, updated=t))
    kept = await service.list_alerts(AlertFilter(equipment_id="a"))
    assert [(a.episode, a.state) for a in kept] == [(4, "open"), (3, "cleared")]
    with pytest.raises(AlertNotFound):
        await service.get_alert("a:rul_low:1")
    assert [a.id for a in await service.list_alerts(AlertFilter(equipment_id="b"))] == ["b:rul_low:1"]


async def test_malformed_messages_are_dropped_and_kept_as_dead_letters(service: AlertingService) -> None:
    assert await service.on_alert(envelope({"id": "x"}, "bad-1"), "alerts") == Outcome.DROP
    assert await service.on_health(envelope([1, 2], "bad-2"), "equipment-health") == Outcome.DROP
    assert await service.on_undecodable(b"{oops", "alerts", "body is not JSON") == Outcome.DROP
    letters = await service.letters.newest(10)
    assert [d.topic for d in letters] == ["alerts", "equipment-health", "alerts"]
    assert letters[0].reading == "{oops" and "not JSON" in letters[0].reason
    assert "malformed equipment-health message" in letters[1].reason
    assert "equipment_id" in letters[2].reason, "the reason names the missing field"
    assert await service.list_alerts(AlertFilter()) == []


async def test_fleet_keeps_latest_snapshot_per_machine(service: AlertingService) -> None:
    assert await service.fleet.record(snapshot("a", updated=5, status="warning"))
    assert not await service.fleet.record(snapshot("a", updated=1)), "older snapshot arrived late"
    assert not await service.fleet.record(snapshot("a", updated=5, status="warning")), "duplicate"
    assert await service.fleet.record(snapshot("b", updated=1))
    fleet = await service.fleet.view()
    assert fleet.total == 2 and fleet.counts["warning"] == 1 and fleet.counts["ok"] == 1
    assert [m.status for m in fleet.machines] == ["warning", "ok"]


async def test_health_handler(service: AlertingService) -> None:
    data = json.loads(snapshot("c").model_dump_json())
    assert await service.on_health(envelope(data), "equipment-health") == Outcome.SUCCESS
    assert (await service.fleet.view()).machines[0].equipment_id == "c"


async def test_dead_letters_newest_first_bounded_per_shard_and_deduplicated(
    repo: InMemoryAlertingRepository,
) -> None:
    ring = 2
    service = AlertingService(
        repo, FakeMachines(), dead_letter_retention=ring * DEAD_LETTER_SHARDS, clock=ticking()
    )
    by_shard: dict[int, list[int]] = defaultdict(list)
    for i in range(200):
        payload = {
            "reason": f"r{i}",
            "index": i,
            "source": "http",
            "reading": {"equipment_id": "e", "seq": i},
        }
        shard = dead_letter_shard(
            dead_letter_from(payload, "readings-deadletter", f"ev-{i}", "equipment", at(0))
        )
        by_shard[shard].append(i)
        assert (
            await service.on_dead_letter(envelope(payload, f"ev-{i}"), "readings-deadletter")
            == Outcome.SUCCESS
        )
    assert max(len(indexes) for indexes in by_shard.values()) > ring, "some shard's ring went round"
    await service.on_dead_letter(envelope({"reason": "r199", "reading": {}}, "ev-199"), "readings-deadletter")
    letters = await service.letters.newest(1000)
    kept = sorted((i for indexes in by_shard.values() for i in indexes[-ring:]), reverse=True)
    assert [d.index for d in letters] == kept, "each shard keeps its newest, newest first, redelivery dropped"
    assert {(d.shard, d.seq) for d in letters} == {
        (shard, seq)
        for shard, indexes in by_shard.items()
        for seq in range(max(0, len(indexes) - ring), len(indexes))
    }
    assert letters[0].reading == {"equipment_id": "e", "seq": 199} and letters[0].reason == "r199"
    assert [d.index for d in await service.letters.newest(2)] == [199, 198]
