"""Building blocks the pages share: the frame, live subscriptions, AG Grid rows kept in step, columns,
notifications of alerts, and the alert notification status line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nicegui import background_tasks, ui

from apps.dashboard.domain import notification_line
from apps.dashboard.live import AlertChanged, Coalescer, Event
from apps.dashboard.ports import BackendUnavailable
from apps.dashboard.service import DashboardService

NAV = (("/", "Fleet"), ("/alerts", "Alerts"), ("/models", "Models"))
STATUS_CLASSES = {
    "text-red-700 font-bold": "x == 'critical'",
    "text-amber-600 font-bold": "x == 'warning'",
    "text-purple-700": "x == 'stale' || x == 'silent' || x == 'down'",
    "text-gray-500": "x == 'warming_up'",
    "text-green-700": "x == 'ok'",
}
SEVERITY_CLASSES = {"text-red-700 font-bold": "x == 'critical'", "text-amber-600": "x == 'warning'"}


# ----------------------------------------------------------------------------------------- helpers
def frame(active: str) -> None:
    ui.page_title(f"Vigil {active.lower()}")
    with ui.header().classes("items-center gap-6 bg-slate-800 text-white"):
        ui.label("Vigil").classes("text-xl font-bold")
        for path, name in NAV:
            link = ui.link(name, path).classes("text-white text-lg")
            link.classes("underline" if name == active else "no-underline")


def show_error(what: str, exc: Exception) -> None:
    ui.label(f"{what}: {exc}").classes("text-red-700").mark("error")


def subscribe(service: DashboardService, flush: Callable[[list[Event]], None]) -> Coalescer:
    """A Coalescer for this page's client, held until the page has its data, dropped with the page.
    `flush` runs inside the client's context, so what it creates (a notification) reaches this page."""
    client = ui.context.client

    def in_page(events: list[Event]) -> None:
        with client:
            flush(events)

    coalescer = Coalescer(in_page, service.settings.push_interval_seconds)
    coalescer.hold()
    unsubscribe = service.hub.subscribe(coalescer)

    def drop() -> None:
        unsubscribe()
        coalescer.close()

    client.on_delete(drop)
    return coalescer


class GridRows:
    """An AG Grid's rows kept on both sides: the element's `rowData` (what a reconnecting browser
    gets) and the browser's grid, changed by one transaction per flush (filters, sort and scroll
    position stay as the operator left them)."""

    def __init__(self, grid: ui.aggrid, key: str) -> None:
        self.grid = grid
        self.key = key
        self.index = {row[key]: i for i, row in enumerate(grid.options["rowData"])}

    def upsert(self, rows: list[dict[str, Any]]) -> None:
        data = self.grid.options["rowData"]
        adds, updates = [], []
        for row in rows:
            at = self.index.get(row[self.key])
            if at is None:
                self.index[row[self.key]] = len(data)
                data.append(row)
                adds.append(row)
            else:
                data[at] = row
                updates.append(row)
        if adds or updates:
            self.grid.run_grid_method("applyTransaction", {"add": adds, "update": updates})

    def remove(self, key: str) -> None:
        data = self.grid.options["rowData"]
        at = self.index.pop(key, None)
        if at is None:
            return
        row = data.pop(at)
        self.index = {r[self.key]: i for i, r in enumerate(data)}
        self.grid.run_grid_method("applyTransaction", {"remove": [row]})

    def replace(self, rows: list[dict[str, Any]]) -> None:
        self.grid.options["rowData"] = rows
        self.index = {row[self.key]: i for i, row in enumerate(rows)}
        self.grid.run_grid_method("setGridOption", "rowData", rows)


def grid_options(columns: list[dict[str, Any]], rows: list[dict[str, Any]], key: str) -> dict[str, Any]:
    return {
        "columnDefs": columns,
        "defaultColDef": {
            "sortable": True,
            "filter": True,
            "floatingFilter": True,
            "resizable": True,
            "minWidth": 110,
        },
        "rowData": rows,
        ":getRowId": f"params => String(params.data.{key})",
        "animateRows": False,
        "suppressCellFocus": True,
    }


def text_col(field: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"field": field, "headerName": name, "filter": "agTextColumnFilter", **extra}


def number_col(field: str, name: str, **extra: Any) -> dict[str, Any]:
    return {"field": field, "headerName": name, "filter": "agNumberColumnFilter", **extra}


def notify_alert(event: AlertChanged) -> None:
    alert = event.event
    if alert is None or alert.event in ("clear", "resolve"):
        return
    ui.notify(
        f"{alert.severity} alert on {alert.equipment_id}: {alert.message or alert.kind}",
        type="negative" if alert.severity == "critical" else "warning",
    )


class NotificationsLine:
    """A line saying whether alert notifications get through, red when they do not: read when the page
    opens, every `every` seconds (a webhook fails or recovers without any alert changing), and soon
    after an alert change (which may have queued one)."""

    def __init__(self, service: DashboardService, every: float = 10.0) -> None:
        self.service = service
        self.label = ui.label().classes("text-sm").mark("notifications")
        self.client = ui.context.client
        ui.timer(every, self.refresh)

    async def refresh(self) -> None:
        try:
            text, bad = notification_line(await self.service.notifications())
        except BackendUnavailable as exc:
            text, bad = f"Notifications: unknown, alerting did not answer ({exc})", True
        self.label.set_text(text)
        self.label.classes(replace="text-sm text-red-700 font-bold" if bad else "text-sm text-gray-600")

    def soon(self) -> None:
        background_tasks.create(self.refresh(), name="dashboard-notifications", context=self.client)
