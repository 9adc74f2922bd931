"""Operators' actions in the pages (NiceGUI user simulation over the in-memory backend): resolve with a
note, an alert's history, retiring a machine, and a failing notification webhook shown in red."""

from __future__ import annotations

from datetime import UTC, datetime

from nicegui import ui

from apps.common.contracts import Alert
from apps.dashboard.domain import (
    AlertChangeInfo,
    Fleet,
    NotificationStatus,
    change_rows,
    merge_alert_event,
    notification_line,
)
from tests.unit.dashboard.conftest import Dashboard
from tests.unit.dashboard.fakes import alert_event, alert_info, at, eventually, snapshot


def grid_rows(d: Dashboard, marker: str) -> list[dict]:  # type: ignore[type-arg]
    (grid,) = d.user.find(marker=marker).elements
    assert isinstance(grid, ui.aggrid)
    return grid.options["rowData"]  # type: ignore[no-any-return]


def text(d: Dashboard, marker: str) -> str:
    (element,) = d.user.find(marker=marker).elements
    return element.text  # type: ignore[attr-defined]


async def test_resolve_with_a_note_from_the_alerts_page_and_see_the_history(dashboard: Dashboard) -> None:
    d = dashboard
    record = alert_info("open", equipment_id="m-1", severity="critical")
    d.backend.alert_records = {record.id: record}
    await d.user.open("/alerts")
    d.user.find(marker="alerts-grid").trigger("cellClicked", {"data": {"id": record.id}})
    d.user.find(marker="ack-by").clear().type("dora")
    d.user.find(marker="note").type("bearing replaced")
    d.user.find(marker="resolve").click()
    await eventually(lambda: grid_rows(d, "alerts-grid")[0]["state"] == "resolved", what="row resolved")
    row = grid_rows(d, "alerts-grid")[0]
    assert row["resolved_by"] == "dora" and row["resolved_at"] == "2024-01-01 00:16:40"
    assert text(d, "alerts-resolved") == "resolved 1" and text(d, "alerts-open") == "open 0"
    await d.user.should_see("2024-01-01 00:16:40 resolve by dora -> resolved: bearing replaced")
    d.user.find(marker="resolve").click()  # disabled now: nothing happens
    assert d.backend.calls.count("resolve") == 1


async def test_a_refused_resolve_says_why(dashboard: Dashboard) -> None:
    d = dashboard
    record = alert_info("open", equipment_id="m-1")
    d.backend.alert_records = {record.id: record}
    await d.user.open("/alerts")
    d.user.find(marker="alerts-grid").trigger("cellClicked", {"data": {"id": record.id}})
    d.backend.alert_records[record.id] = alert_info("cleared", equipment_id="m-1")  # cleared meanwhile
    d.user.find(marker="resolve").click()
    await d.user.should_see(f"not resolved: alert {record.id} is already cleared")


async def test_retire_a_machine_from_its_page(dashboard: Dashboard) -> None:
    d = dashboard
    d.backend.snapshots = {"m-1": snapshot("m-1", status="silent"), "m-2": snapshot("m-2")}
    silent = alert_info("open", equipment_id="m-1")
    d.backend.alert_records = {silent.id: silent}
    await d.user.open("/machine/m-1")
    d.user.find(marker="retire").click()
    d.user.find(marker="retire-note").type("scrapped")
    d.user.find(marker="retire-confirm").click()
    await eventually(lambda: d.backend.retired == ["m-1"], what="retired through alerting")
    await d.user.should_see(f"m-1 retired: no longer watched; resolved {silent.id}")
    assert d.backend.alert_records[silent.id].history[-1].note == "machine retired: scrapped"


async def test_a_retired_machine_leaves_an_open_fleet_page(dashboard: Dashboard) -> None:
    d = dashboard
    d.backend.snapshots = {"m-1": snapshot("m-1", status="silent"), "m-2": snapshot("m-2")}
    await d.user.open("/")
    assert len(grid_rows(d, "fleet-grid")) == 2
    await d.service.retire("m-1", "ana", "")  # as from another operator's machine page
    await eventually(
        lambda: [r["equipment_id"] for r in grid_rows(d, "fleet-grid")] == ["m-2"], what="row gone"
    )
    assert text(d, "fleet-total") == "1 machine"


async def test_a_failing_webhook_is_shown_in_red(dashboard: Dashboard) -> None:
    d = dashboard
    d.backend.notification_status = NotificationStatus(
        failing=True, pending=3, last_failure_at=at(60), last_error="received status code 503"
    )
    for page in ("/", "/alerts"):
        await d.user.open(page)
        await d.user.should_see("Notifications FAILING: 3 not delivered, retrying")
        (line,) = d.user.find(marker="notifications").elements
        assert "text-red-700" in line.classes


async def test_the_machine_page_lists_every_change_of_its_alerts(dashboard: Dashboard) -> None:
    d = dashboard
    d.backend.snapshots = {"m-1": snapshot("m-1", status="warning", rul=45)}
    record = alert_info("open", equipment_id="m-1")
    d.backend.alert_records = {record.id: record}
    await d.backend.acknowledge(record.id, "ana", "on my way")
    await d.user.open("/machine/m-1")
    rows = grid_rows(d, "machine-changes")
    assert [(r["action"], r["by"], r["note"]) for r in rows] == [("acknowledge", "ana", "on my way")]


def test_notification_lines() -> None:
    ok = NotificationStatus(delivered=12, last_delivered_at=datetime(2024, 1, 1, 0, 5, tzinfo=UTC))
    assert notification_line(ok) == ("Notifications ok: 12 delivered, last 2024-01-01 00:05:00 UTC", False)
    assert notification_line(NotificationStatus(pending=2)) == ("Notifications: 2 being sent", False)
    assert notification_line(NotificationStatus(abandoned=1))[1], "given-up notifications are a problem"


def test_a_reopen_event_opens_a_cleared_alert_and_a_resolved_one_stays() -> None:
    cleared = alert_info("cleared", equipment_id="m-1", updated=10)
    reopen = alert_event("open", equipment_id="m-1", updated=20).model_copy(update={"event": "reopen"})
    assert merge_alert_event(cleared, Alert.model_validate(reopen.model_dump())).state == "open"
    resolved = alert_info("open", equipment_id="m-1").model_copy(update={"state": "resolved"})
    assert merge_alert_event(resolved, reopen).state == "resolved"


def test_change_rows_and_fleet_removal() -> None:
    change = AlertChangeInfo(
        at=at(5), action="acknowledge", by="ana", state="acknowledged", severity="warning"
    )
    a = alert_info("acknowledged", equipment_id="m-1").model_copy(update={"history": [change]})
    assert change_rows([a])[0] | {"key": ""} == {
        "key": "",
        "alert_id": a.id,
        "at": "2024-01-01 00:00:05",
        "action": "acknowledge",
        "by": "ana",
        "state": "acknowledged",
        "severity": "warning",
        "note": "",
    }
    fleet = Fleet.of([snapshot("m-1"), snapshot("m-2")], [a])
    assert fleet.remove("m-1") and not fleet.remove("m-1")
    assert [r["equipment_id"] for r in fleet.rows()] == ["m-2"] and "m-1" not in fleet.active_alerts
