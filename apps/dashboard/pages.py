"""The NiceGUI pages: fleet (/), machine (/machine/{id}), alerts (/alerts) and models (/models).

Each page loads its rows through DashboardService, shows them in NiceGUI's AG Grid and ECharts
elements, and subscribes a Coalescer to the LiveHub: live events change the page's rows and are
pushed over NiceGUI's websocket (grid transactions, chart updates, notifications). No polling.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from nicegui import background_tasks, ui

from apps.common.contracts import EQUIPMENT_ID_PATTERN
from apps.dashboard.domain import (
    LIFECYCLE_STATES,
    STATUS_ORDER,
    AlertInfo,
    alert_counts,
    alert_row,
    alert_rows,
    extend_history,
    merge_alert_event,
    rul_series,
)
from apps.dashboard.live import AlertChanged, Coalescer, Event, HealthChanged, ModelChanged
from apps.dashboard.ports import AckRefused, AlertNotFound, BackendUnavailable
from apps.dashboard.service import DashboardService, ModelsView

NAV = (("/", "Fleet"), ("/alerts", "Alerts"), ("/models", "Models"))
STATUS_CLASSES = {
    "text-red-700 font-bold": "x == 'critical'",
    "text-amber-600 font-bold": "x == 'warning'",
    "text-purple-700": "x == 'stale' || x == 'silent'",
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
    if alert is None or alert.event == "clear":
        return
    ui.notify(
        f"{alert.severity} alert on {alert.equipment_id}: {alert.message or alert.kind}",
        type="negative" if alert.severity == "critical" else "warning",
    )


# ------------------------------------------------------------------------------------------- fleet
FLEET_COLUMNS = [
    text_col("equipment_id", "Machine", pinned="left", minWidth=150),
    text_col(
        "status",
        "Status",
        sort="asc",
        sortIndex=0,
        cellClassRules=STATUS_CLASSES,
        **{":comparator": "(a, b, nodeA, nodeB) => nodeA.data.status_rank - nodeB.data.status_rank"},
    ),
    number_col("predicted_rul", "Predicted RUL", sort="asc", sortIndex=1),
    number_col("open_alerts", "Open alerts"),
    text_col("last_reading_at", "Last reading (UTC)"),
    number_col("model_version", "Model"),
    text_col("profile", "Profile"),
    number_col("readings", "Readings"),
    number_col("predictions_owed", "Owed predictions"),
]


async def fleet_page(service: DashboardService) -> None:
    frame("Fleet")
    page: dict[str, Any] = {}

    def flush(events: list[Event]) -> None:
        fleet, rows = page["fleet"], page["rows"]
        changed: dict[str, dict[str, Any]] = {}
        for event in events:
            row = None
            if isinstance(event, HealthChanged):
                row = fleet.apply_health(event.snapshot)
            elif isinstance(event, AlertChanged):
                active = event.record.is_active if event.record else event.event.event != "clear"  # type: ignore[union-attr]
                row = fleet.apply_alert(event.equipment_id, event.alert_id, active)
                notify_alert(event)
            if row is not None:
                changed[row["equipment_id"]] = row
        rows.upsert(list(changed.values()))
        show_counts()

    def show_counts() -> None:
        counts = page["fleet"].counts()
        total = sum(counts.values())
        page["total"].set_text(f"{total} machine{'' if total == 1 else 's'}")
        for status, button in page["buttons"].items():
            button.set_text(f"{status} {counts[status]}")

    coalescer = subscribe(service, flush)
    try:
        page["fleet"] = await service.fleet()
    except BackendUnavailable as exc:
        show_error("alerting is unavailable", exc)
        return

    def only(status: str | None) -> None:
        match = {"filterType": "text", "type": "equals", "filter": status}
        grid.run_grid_method("setFilterModel", None if status is None else {"status": match})

    with ui.row().classes("items-center gap-2"):
        page["total"] = ui.label().classes("text-lg font-bold mr-4").mark("fleet-total")
        ui.button("all", on_click=lambda: only(None)).props("flat dense no-caps")
        page["buttons"] = {
            s: ui.button(s, on_click=lambda s=s: only(s)).props("outline dense no-caps").mark(f"count-{s}")
            for s in STATUS_ORDER
        }
        ui.input(
            "search machine id",
            on_change=lambda e: grid.run_grid_method("setGridOption", "quickFilterText", e.value or ""),
        ).props("dense clearable").classes("ml-4 w-64").mark("fleet-search")
    grid = (
        ui.aggrid(grid_options(FLEET_COLUMNS, page["fleet"].rows(), "equipment_id"), theme="balham")
        .classes("w-full")
        .style("height: calc(100vh - 160px)")
        .mark("fleet-grid")
    )
    grid.on("cellClicked", lambda e: ui.navigate.to(f"/machine/{e.args['data']['equipment_id']}"))
    page["rows"] = GridRows(grid, "equipment_id")
    show_counts()
    coalescer.release()


# ----------------------------------------------------------------------------------------- machine
MACHINE_ALERT_COLUMNS = [
    text_col("id", "Alert", minWidth=200),
    text_col("state", "State"),
    text_col("severity", "Severity", cellClassRules=SEVERITY_CLASSES),
    text_col("kind", "Kind"),
    number_col("predicted_rul", "RUL at alert"),
    text_col("top_sensors", "Top sensors", minWidth=220),
    text_col("raised_at", "Raised (UTC)", sort="desc"),
    text_col("acknowledged_by", "Acknowledged by"),
    text_col("acknowledged_at", "Acknowledged (UTC)"),
    text_col("cleared_at", "Cleared (UTC)"),
]
SUMMARY_FIELDS = (
    ("status", "status"),
    ("predicted_rul", "predicted RUL"),
    ("last_reading_at", "last reading (UTC)"),
    ("model_version", "model version"),
    ("open_alerts", "open alerts"),
    ("profile", "profile"),
)


async def machine_page(service: DashboardService, equipment_id: str) -> None:
    frame("Fleet")
    if not re.fullmatch(EQUIPMENT_ID_PATTERN, equipment_id):
        ui.label(f"{equipment_id!r} is not a machine id").mark("error")
        return
    page: dict[str, Any] = {}

    def flush(events: list[Event]) -> None:
        view = page["view"]
        chart_changed = alerts_changed = False
        for event in events:
            if isinstance(event, HealthChanged) and event.snapshot.equipment_id == equipment_id:
                view.health = event.snapshot
                chart_changed |= extend_history(view.history, event.snapshot, service.settings.history_points)
            elif isinstance(event, AlertChanged) and event.equipment_id == equipment_id:
                new = event.record or merge_alert_event(view.alerts.get(event.alert_id), event.event)  # type: ignore[arg-type]
                view.alerts[new.id] = new
                page["alert_rows"].upsert([alert_row(new)])
                alerts_changed = True
                notify_alert(event)
        show_summary()
        if chart_changed:
            page["chart"].options["series"][0]["data"] = rul_series(view.history)
            page["chart"].update()
        if alerts_changed:
            page["sensors"].options.update(view.sensor_chart())
            page["sensors"].update()

    def show_summary() -> None:
        summary = page["view"].summary()
        for key, label in page["summary"].items():
            value = summary.get(key)
            label.set_text("-" if value in (None, "") else str(value))

    coalescer = subscribe(service, flush)
    try:
        view = await service.machine(equipment_id)
    except BackendUnavailable as exc:
        show_error(f"machine {equipment_id} is unavailable", exc)
        return
    page["view"] = view
    ui.label(f"Machine {equipment_id}").classes("text-2xl font-bold").mark("machine-title")
    if not view.known:
        ui.label("No readings, predictions or alerts for this machine (yet).").mark("machine-unknown")
    page["summary"] = {}
    with ui.row().classes("gap-4"):
        for key, label in SUMMARY_FIELDS:
            with ui.card().classes("p-3 min-w-32"):
                ui.label(label).classes("text-xs text-gray-500")
                page["summary"][key] = ui.label().classes("text-lg font-bold").mark(f"machine-{key}")
    show_summary()
    ui.label("Predicted remaining useful life").classes("text-lg font-bold mt-4")
    page["chart"] = ui.echart(view.chart()).classes("w-full h-96").mark("rul-chart")
    ui.label("Top deviating sensors of its alerts").classes("text-lg font-bold mt-4")
    page["sensors"] = ui.echart(view.sensor_chart()).classes("w-full h-64").mark("sensor-chart")
    ui.label("Alert history").classes("text-lg font-bold mt-4")
    grid = (
        ui.aggrid(grid_options(MACHINE_ALERT_COLUMNS, view.alert_rows(), "id"), theme="balham")
        .classes("w-full h-80")
        .mark("machine-alerts")
    )
    page["alert_rows"] = GridRows(grid, "id")
    coalescer.release()


# ------------------------------------------------------------------------------------------ alerts
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
    text_col("acknowledged_by", "Acknowledged by"),
    text_col("acknowledged_at", "Acknowledged (UTC)"),
    text_col("cleared_at", "Cleared (UTC)"),
    text_col("cleared_reason", "Cleared because"),
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

    def show_counts() -> None:
        counts = alert_counts(page["alerts"].values())
        for state, label in page["counts"].items():
            label.set_text(f"{state} {counts[state]}")

    def select(alert_id: str) -> None:
        page["selected"] = alert_id
        show_selected()

    def show_selected() -> None:
        alert = page["alerts"].get(page["selected"])
        detail, ack = page["detail"], page["ack"]
        if alert is None:
            detail.set_text("Click an alert to see it and acknowledge it.")
            ack.disable()
            return
        who = (
            f"acknowledged by {alert.acknowledged_by or '?'} at {alert.acknowledged_at:%Y-%m-%d %H:%M:%S} UTC"
            if alert.acknowledged_at
            else "not acknowledged"
        )
        cleared = (
            f"; cleared {alert.cleared_at:%Y-%m-%d %H:%M:%S} UTC ({alert.cleared_reason})"
            if alert.cleared_at
            else ""
        )
        detail.set_text(f"{alert.id}: {alert.state}, {alert.severity}. {alert.message} ({who}{cleared})")
        ack.set_enabled(alert.state == "open")

    async def acknowledge() -> None:
        alert_id = page["selected"]
        if alert_id is None:
            return
        try:
            record = await service.acknowledge(alert_id, page["by"].value)
        except (AckRefused, AlertNotFound) as exc:
            ui.notify(f"not acknowledged: {exc}", type="warning")
            return
        except BackendUnavailable as exc:
            ui.notify(f"alerting is unavailable: {exc}", type="negative")
            return
        page["alerts"][record.id] = record
        page["rows"].upsert([alert_row(record)])
        show_counts()
        show_selected()
        ui.notify(f"{record.id} acknowledged by {record.acknowledged_by}", type="positive")

    coalescer = subscribe(service, flush)
    try:
        page["alerts"] = {a.id: a for a in await service.alerts()}
    except BackendUnavailable as exc:
        show_error("alerting is unavailable", exc)
        return
    with ui.row().classes("items-center gap-4"):
        page["counts"] = {
            s: ui.label().classes("text-lg font-bold").mark(f"alerts-{s}") for s in LIFECYCLE_STATES
        }
    with ui.row().classes("items-center gap-4 w-full"):
        page["detail"] = ui.label().classes("grow").mark("alert-detail")
        page["by"] = (
            ui.input("acknowledged by", value=service.settings.default_operator).props("dense").mark("ack-by")
        )
        page["ack"] = ui.button("Acknowledge", on_click=acknowledge).props("no-caps").mark("ack")
    grid = (
        ui.aggrid(grid_options(ALERT_COLUMNS, alert_rows(page["alerts"].values()), "id"), theme="balham")
        .classes("w-full")
        .style("height: calc(100vh - 200px)")
        .mark("alerts-grid")
    )
    grid.on("cellClicked", lambda e: select(e.args["data"]["id"]))
    page["rows"] = GridRows(grid, "id")
    show_counts()
    show_selected()
    coalescer.release()


# ------------------------------------------------------------------------------------------ models
def model_columns(metrics: list[str]) -> list[dict[str, Any]]:
    return [
        text_col("name", "Model"),
        number_col("version", "Version", sort="desc"),
        {"field": "serving", "headerName": "Serving", "cellDataType": "boolean"},
        {"field": "champion", "headerName": "Champion", "cellDataType": "boolean"},
        text_col("created_at", "Created (UTC)"),
        *(number_col(f"metric_{m}", m) for m in metrics),
        number_col("n_train_units", "Train units"),
        number_col("n_train_rows", "Train rows"),
        number_col("rul_cap", "RUL cap"),
        text_col("onnx_sha256", "ONNX sha256"),
    ]


async def models_page(service: DashboardService) -> None:
    frame("Models")
    page: dict[str, Any] = {}

    async def reload() -> None:
        try:
            view = await service.models()
        except BackendUnavailable as exc:
            ui.notify(f"the registry is unavailable: {exc}", type="negative")
            return
        page["grid"].options["columnDefs"] = model_columns(view.metric_names())
        page["grid"].options["rowData"] = view.rows()
        page["grid"].update()
        show(view)

    def flush(events: list[Event]) -> None:
        updates = [e.update for e in events if isinstance(e, ModelChanged)]
        for u in updates:
            ui.notify(f"model {u.name} v{u.version} registered" + (" and promoted" if u.promoted else ""))
        if updates:
            background_tasks.create(reload(), name="dashboard-models-reload", context=ui.context.client)

    def show(view: ModelsView) -> None:
        page["serving"].set_text(
            "serving: "
            + (", ".join(f"{k} v{v}" for k, v in sorted(view.serving.items())) or "nothing")
            + (f" (inference: {view.serving_error})" if view.serving_error else "")
        )
        page["cards"].clear()
        with page["cards"]:
            for model in view.models:
                for card in sorted(model.versions, key=lambda c: -c.version):
                    with ui.expansion(f"{card.name} v{card.version} model card").classes("w-full"):
                        ui.code(json.dumps(card.model_dump(mode="json"), indent=2), language="json")

    coalescer = subscribe(service, flush)
    try:
        view = await service.models()
    except BackendUnavailable as exc:
        show_error("the model registry is unavailable", exc)
        return
    page["serving"] = ui.label().classes("text-lg font-bold").mark("models-serving")
    page["grid"] = (
        ui.aggrid(grid_options(model_columns(view.metric_names()), view.rows(), "key"), theme="balham")
        .classes("w-full h-72")
        .mark("models-grid")
    )
    page["cards"] = ui.column().classes("w-full")
    show(view)
    coalescer.release()


def register_pages(service: DashboardService) -> None:
    """Add the pages to NiceGUI's app (mounted on the dashboard's FastAPI app by ui.run_with)."""
    timeout = service.settings.page_timeout_seconds

    @ui.page("/", response_timeout=timeout)
    async def _fleet() -> None:
        await fleet_page(service)

    @ui.page("/machine/{equipment_id}", response_timeout=timeout)
    async def _machine(equipment_id: str) -> None:
        await machine_page(service, equipment_id)

    @ui.page("/alerts", response_timeout=timeout)
    async def _alerts() -> None:
        await alerts_page(service)

    @ui.page("/models", response_timeout=timeout)
    async def _models() -> None:
        await models_page(service)
