"""Operators' actions through the service: resolve (the actor ends the episode first), retire (the
machine leaves the fleet, its alerts are resolved, a late snapshot cannot bring it back), and the
notifications each change owes in the outbox."""

from __future__ import annotations

import pytest

from apps.alerting.errors import AlertClosed, AlertNotFound, EquipmentUnavailable
from apps.alerting.lifecycle import AlertFilter
from apps.alerting.notifications import NotifyPolicy
from apps.alerting.service import AlertingService
from tests.unit.alerting.fakes import FakeMachines, InMemoryAlertingRepository
from tests.unit.alerting.helpers import alert, at, snapshot


@pytest.fixture
def repo() -> InMemoryAlertingRepository:
    return InMemoryAlertingRepository()


@pytest.fixture
def machines() -> FakeMachines:
    return FakeMachines()


@pytest.fixture
def service(repo: InMemoryAlertingRepository, machines: FakeMachines) -> AlertingService:
    return AlertingService(repo, machines, clock=lambda: at(500))


def owed(repo: InMemoryAlertingRepository) -> list[tuple[str, str]]:
    return sorted((n.alert_id, n.action) for n in repo.notifications())


async def test_resolve_asks_the_actor_first_and_is_kept_with_who_and_why(
    service: AlertingService, repo: InMemoryAlertingRepository, machines: FakeMachines
) -> None:
    await service.apply_alert(alert("open", revision=1))
    record = await service.resolve("engine-001:rul_low:1", "bo", "bearing replaced")
    assert machines.ended == [("engine-001", "rul_low", 1)]
    assert (record.state, record.resolved_by, record.resolved_at, record.updated_at) == (
        "resolved",
        "bo",
        at(500),
        at(500),
    )
    assert record.history[-1].note == "bearing replaced"
    assert owed(repo) == [("engine-001:rul_low:1", "open"), ("engine-001:rul_low:1", "resolve")]
    with pytest.raises(AlertClosed, match="resolved by bo"):
        await service.acknowledge(record.id, "ana")
    # The persisting condition is a new episode from the actor: a new alert, the resolved one stays.
    await service.apply_alert(alert("open", episode=2, raised=600, updated=600, revision=1))
    states = {a.id: a.state for a in await service.list_alerts(AlertFilter())}
    assert states == {"engine-001:rul_low:1": "resolved", "engine-001:rul_low:2": "open"}


async def test_an_actor_that_does_not_answer_changes_nothing(
    service: AlertingService, repo: InMemoryAlertingRepository, machines: FakeMachines
) -> None:
    await service.apply_alert(alert("open"))
    machines.down = True
    writes = repo.writes
    with pytest.raises(EquipmentUnavailable, match="did not answer"):
        await service.resolve("engine-001:rul_low:1", "bo")
    assert repo.writes == writes and (await service.get_alert("engine-001:rul_low:1")).state == "open"


async def test_resolve_refusals_come_before_the_actor_is_asked(
    service: AlertingService, machines: FakeMachines
) -> None:
    await service.apply_alert(alert("open"))
    await service.apply_alert(alert("clear", updated=5))
    with pytest.raises(AlertClosed, match="already cleared"):
        await service.resolve("engine-001:rul_low:1", "bo")
    for unknown in ("engine-001:rul_low:2", "x", "engine-001:rul_low"):
        with pytest.raises(AlertNotFound):
            await service.resolve(unknown, "bo")
    assert machines.ended == []


async def test_an_actor_that_moved_on_still_lets_the_operator_close_the_alert(
    service: AlertingService, machines: FakeMachines
) -> None:
    await service.apply_alert(alert("open"))
    machines.moved_on = True  # its clear is still in flight
    assert (await service.resolve("engine-001:rul_low:1", "bo")).state == "resolved"


async def test_retire_stops_watching_resolves_open_alerts_and_leaves_the_fleet(
    service: AlertingService, repo: InMemoryAlertingRepository, machines: FakeMachines
) -> None:
    await service.fleet.record(snapshot("m1", updated=0, status="silent"))
    await service.fleet.record(snapshot("m2", updated=0))
    await service.apply_alert(alert("open", equipment_id="m1", kind="silent"))
    await service.apply_alert(alert("open", equipment_id="m1", episode=1))
    await service.apply_alert(alert("clear", equipment_id="m1", episode=1, updated=3))
    retired = await service.retire("m1", "ana", "decommissioned")
    assert machines.retired == ["m1"] and retired.resolved_alerts == ["m1:silent:1"]
    assert retired.retired_at == FakeMachines.RETIRED_AT
    silent = await service.get_alert("m1:silent:1")
    assert (silent.state, silent.history[-1].note) == ("resolved", "machine retired: decommissioned")
    assert [m.equipment_id for m in (await service.fleet.view()).machines] == ["m2"]
    # A snapshot published before the retire and delivered after it does not bring it back...
    assert not await service.fleet.record(snapshot("m1", updated=30, status="silent"))
    assert [m.equipment_id for m in (await service.fleet.view()).machines] == ["m2"]
    # ...one after it (the machine sends readings again) does, and the marker goes.
    assert await service.fleet.record(snapshot("m1", updated=4000))
    assert {m.equipment_id for m in (await service.fleet.view()).machines} == {"m1", "m2"}
    assert await repo.retired("m1") is None


async def test_retire_refuses_unknown_machines_and_keeps_everything_when_the_actor_is_down(
    service: AlertingService, machines: FakeMachines
) -> None:
    for unknown in ("nobody", "bad id", ""):
        with pytest.raises(AlertNotFound, match="no machine"):
            await service.retire(unknown, "ana")
    await service.fleet.record(snapshot("m1"))
    machines.down = True
    with pytest.raises(EquipmentUnavailable):
        await service.retire("m1", "ana")
    assert [m.equipment_id for m in (await service.fleet.view()).machines] == ["m1"]


async def test_which_changes_are_notified_is_per_severity(repo: InMemoryAlertingRepository) -> None:
    policy = NotifyPolicy.parse("open", "escalate,acknowledge")
    service = AlertingService(repo, FakeMachines(), policy=policy, clock=lambda: at(500))
    await service.apply_alert(alert("open", revision=1))
    await service.acknowledge("engine-001:rul_low:1", "ana")  # a warning's acknowledgement: not sent
    await service.apply_alert(alert("escalate", severity="critical", updated=5, revision=2))
    await service.acknowledge("engine-001:rul_low:1", "ana")
    await service.apply_alert(alert("clear", severity="critical", updated=9, revision=3))
    assert owed(repo) == [
        ("engine-001:rul_low:1", "acknowledge"),
        ("engine-001:rul_low:1", "escalate"),
        ("engine-001:rul_low:1", "open"),
    ]
    with pytest.raises(ValueError, match="unknown alert changes"):
        NotifyPolicy.parse("open,explode", "")


async def test_a_supersession_is_not_notified_and_each_change_once(
    service: AlertingService, repo: InMemoryAlertingRepository
) -> None:
    woken = []
    service.on_notify = lambda: woken.append(1)
    await service.apply_alert(alert("open", episode=1))
    await service.apply_alert(alert("open", episode=2, raised=50, updated=50))
    await service.apply_alert(alert("open", episode=2, raised=50, updated=50))  # redelivered
    assert owed(repo) == [("engine-001:rul_low:1", "open"), ("engine-001:rul_low:2", "open")]
    assert len(woken) == 2, "the sender is woken once per write that owes a notification"
    payload = next(n.payload for n in repo.notifications() if n.alert_id.endswith(":2"))
    assert (
        payload["change"] == "open" and payload["state"] == "open" and payload["text"].startswith("[warning]")
    )
