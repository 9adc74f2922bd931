"""The alerts page (/alerts): every alert, open first; acknowledge and resolve with a note, each
alert's history (who, when, what), and whether notifications get through.
"""

from __future__ import annotations

from typing import Any

from nicegui import ui

from apps.dashboard.domain import (
    LIFECYCLE_STATES,
    AlertInfo,
    alert_counts,
    alert_row,
    alert_rows,
    describe_changes,
    merge_alert_event,
)
from apps.dashboard.live import AlertChanged, Event
from apps.dashboard.ports import ActionRefused, AlertNotFound, BackendUnavailable
from apps.dashboard.service import DashboardService
from apps.dashboard.signin import page_operator
from apps.dashboard.widgets import (
    SEVERITY_CLASSES,
    GridRows,
    NotificationsLine,
    frame,
    grid_options,
    notify_alert,
    number_col,
    show_error,
    subscribe,
    text_col,
)

ALERT_COLUMNS = [
    text_col(
        "state",
        "State",
        sort="asc",
        sortIndex=0,
        **{":comparator": "(a, b, nodeA, nodeB) => nodeA.data.state_rank - nodeB.data.state_rank"},
    ),
    text_col("severity", "Severity", cellClassRules=SEVERITY_CLASSES),
    text_col("equipment_id", "Machine"),
    text_col("kind", "Kind"),
    number_col("predicted_rul", "RUL at alert"),
    text_col("raised_at", "Raised (UTC)", sort="desc", sortIndex=1),
    text_col("updated_at", "Changed (UTC)"),
    text_col("acknowledged_by", "Acknowledged by"),
    text_col("acknowledged_at", "Acknowledged (UTC)"),
    text_col("cleared_at", "Cleared (UTC)"),
    text_col("cleared_reason", "Cleared because"),
    text_col("resolved_by", "Resolved by"),
    text_col("resolved_at", "Resolved (UTC)"),
    text_col("message", "Message", minWidth=300),
    text_col("id", "Alert id", minWidth=200),
]


async def alerts_page(service: DashboardService) -> None:
    frame("Alerts")
    page: dict[str, Any] = {"selected": None}

    def flush(events: list[Event]) -> None:
        alerts: dict[str, AlertInfo] = page["alerts"]
        changed = []
        for event in events:
            if isinstance(event, AlertChanged):
                new = event.record or merge_alert_event(alerts.get(event.alert_id), event.event)  # type: ignore[arg-type]
                alerts[new.id] = new
                changed.append(alert_row(new))
                notify_alert(event)
        if changed:
            page["rows"].upsert(changed)
            show_counts()
            show_selected()
            page["notifications"].soon()  # a change may have queued a notification

    def show_counts() -> None:
        counts = alert_counts(page["alerts"].values())
        for state, label in page["counts"].items():
            label.set_text(f"{state} {counts[state]}")

    def select(alert_id: str) -> None:
        page["selected"] = alert_id
        show_selected()

    def show_selected() -> None:
        alert = page["alerts"].get(page["selected"])
        detail, history = page["detail"], page["history"]
        history.clear()
        if alert is None:
            detail.set_text("Click an alert to see its history, acknowledge or resolve it.")
            page["ack"].disable()
            page["resolve"].disable()
            return
        detail.set_text(f"{alert.id}: {alert.state}, {alert.severity}. {alert.message}")
        with history:
            for line in describe_changes(alert):
                ui.label(line).classes("text-sm")
        page["ack"].set_enabled(alert.is_active)
        page["resolve"].set_enabled(alert.is_active)

    async def act(action: str) -> None:
        alert_id = page["selected"]
        if alert_id is None:
            return
        note = page["note"].value or ""
        try:
            by = page_operator(page["by"].value)  # the signed-in key, when sign-in is on
            if action == "acknowledge":
                record = await service.acknowledge(alert_id, by, note)
            else:
                record = await service.resolve(alert_id, by, note)
        except (ActionRefused, AlertNotFound) as exc:
            ui.notify(f"not {action}d: {exc}", type="warning")
            return
        except BackendUnavailable as exc:
            ui.notify(f"not {action}d, alerting is unavailable: {exc}", type="negative")
            return
        page["alerts"][record.id] = record
        page["rows"].upsert([alert_row(record)])
        page["note"].set_value("")
        show_counts()
        show_selected()
        who = record.resolved_by if action == "resolve" else record.acknowledged_by
        ui.notify(f"{record.id} {action}d by {who}", type="positive")

    coalescer = subscribe(service, flush)
    try:
        page["alerts"] = {a.id: a for a in await service.alerts()}
    except BackendUnavailable as exc:
        show_error("alerting is unavailable", exc)
        return
    page["notifications"] = NotificationsLine(service)
    with ui.row().classes("items-center gap-4"):
        page["counts"] = {
            s: ui.label().classes("text-lg font-bold").mark(f"alerts-{s}") for s in LIFECYCLE_STATES
        }
    with ui.row().classes("items-center gap-4 w-full"):
        page["detail"] = ui.label().classes("grow").mark("alert-detail")
        page["by"] = (
            ui.input("operator", value=service.settings.default_operator).props("dense").mark("ack-by")
        )
        page["note"] = ui.input("note").props("dense clearable").classes("w-72").mark("note")
        page["ack"] = (
            ui.button("Acknowledge", on_click=lambda: act("acknowledge")).props("no-caps").mark("ack")
        )
        page["resolve"] = (
            ui.button("Resolve", on_click=lambda: act("resolve"))
            .props("no-caps color=negative")
            .mark("resolve")
        )
    page["history"] = ui.column().classes("gap-0").mark("alert-history")
    grid = (
        ui.aggrid(grid_options(ALERT_COLUMNS, alert_rows(page["alerts"].values()), "id"), theme="balham")
        .classes("w-full")
        .style("height: calc(100vh - 260px)")
        .mark("alerts-grid")
    )
    grid.on("cellClicked", lambda e: select(e.args["data"]["id"]))
    page["rows"] = GridRows(grid, "id")
    show_counts()
    show_selected()
    coalescer.release()
