"""The NiceGUI pages: fleet (/), machine (/machine/{id}), alerts (/alerts, in alerts_page.py) and models
(/models).

Each page loads its rows through DashboardService, shows them in NiceGUI's AG Grid and ECharts
elements, and subscribes a Coalescer to the LiveHub: live events change the page's rows and are
pushed over NiceGUI's websocket (grid transactions, chart updates, notifications). No polling.
"""

from __future__ import annotations

import json
import re
from typing import Any

from nicegui import background_tasks, ui

from apps.common.contracts import EQUIPMENT_ID_PATTERN
from apps.dashboard.alerts_page import alerts_page
from apps.dashboard.domain import (
    STATUS_ORDER,
    alert_row,
    drift_line,
    extend_history,
    merge_alert_event,
    rul_series,
)
from apps.dashboard.live import AlertChanged, Event, HealthChanged, MachineRetired, ModelChanged
from apps.dashboard.ports import ActionRefused, AlertNotFound, BackendUnavailable
from apps.dashboard.service import DashboardService, ModelsView
from apps.dashboard.signin import page_operator
from apps.dashboard.widgets import (
    SEVERITY_CLASSES,
    STATUS_CLASSES,
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
            if isinstance(event, MachineRetired):
                fleet.remove(event.equipment_id)
                changed.pop(event.equipment_id, None)
                rows.remove(event.equipment_id)
            elif isinstance(event, HealthChanged):
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
    NotificationsLine(service)
    grid = (
        ui.aggrid(grid_options(FLEET_COLUMNS, page["fleet"].rows(), "equipment_id"), theme="balham")
        .classes("w-full")
        .style("height: calc(100vh - 190px)")
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
    text_col("resolved_by", "Resolved by"),
]
CHANGE_COLUMNS = [
    text_col("at", "When (UTC)", sort="desc", minWidth=160),
    text_col("alert_id", "Alert", minWidth=200),
    text_col("action", "Change"),
    text_col("by", "By"),
    text_col("state", "State after"),
    text_col("severity", "Severity", cellClassRules=SEVERITY_CLASSES),
    text_col("note", "Note", minWidth=260),
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
            elif isinstance(event, MachineRetired) and event.equipment_id == equipment_id:
                ui.notify(f"{equipment_id} was retired: it is no longer watched", type="info")
            elif isinstance(event, ModelChanged):
                background_tasks.create(
                    follow_model(event), name="dashboard-machine-thresholds", context=ui.context.client
                )
        show_summary()
        if chart_changed:
            page["chart"].options["series"][0]["data"] = rul_series(view.history)
            page["chart"].update()
        if alerts_changed:
            page["sensors"].options.update(view.sensor_chart())
            page["sensors"].update()
            page["changes"].replace(view.change_rows())

    async def follow_model(event: ModelChanged) -> None:
        # A promoted anomaly model brings its own learnt thresholds: redraw the lines at once.
        if await service.follow_model(page["view"], event.update):
            page["chart"].options.update(page["view"].chart())
            page["chart"].update()

    async def retire(dialog: ui.dialog, by: str, note: str) -> None:
        try:
            resolved = await service.retire(equipment_id, page_operator(by), note)
        except (ActionRefused, AlertNotFound) as exc:
            ui.notify(f"not retired: {exc}", type="warning")
            return
        except BackendUnavailable as exc:
            ui.notify(f"not retired, alerting is unavailable: {exc}", type="negative")
            return
        dialog.close()
        closed = f"; resolved {', '.join(resolved)}" if resolved else ""
        ui.notify(f"{equipment_id} retired: no longer watched{closed}", type="positive")
        ui.navigate.to("/")

    def confirm_retire() -> None:
        with ui.dialog() as dialog, ui.card():
            ui.label(f"Retire {equipment_id}?").classes("text-lg font-bold")
            ui.label("It will no longer be watched (no silence alerts) and its open alerts are resolved.")
            by = ui.input("operator", value=service.settings.default_operator).mark("retire-by")
            note = ui.input("note (why)").classes("w-96").mark("retire-note")
            with ui.row():
                ui.button("Retire", on_click=lambda: retire(dialog, by.value, note.value or "")).props(
                    "no-caps color=negative"
                ).mark("retire-confirm")
                ui.button("Cancel", on_click=dialog.close).props("flat no-caps")
        dialog.open()

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
    with ui.row().classes("items-center gap-4"):
        ui.label(f"Machine {equipment_id}").classes("text-2xl font-bold").mark("machine-title")
        if view.known:
            ui.button("Retire machine", on_click=confirm_retire).props("outline no-caps color=negative").mark(
                "retire"
            )
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
    ui.label("Alert changes (who, when, what)").classes("text-lg font-bold mt-4")
    changes = (
        ui.aggrid(grid_options(CHANGE_COLUMNS, view.change_rows(), "key"), theme="balham")
        .classes("w-full h-80")
        .mark("machine-changes")
    )
    page["changes"] = GridRows(changes, "key")
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
        page["drift"].clear()
        with page["drift"]:
            for model in view.models:
                level = model.drift.level if model.drift else "unknown"
                ui.label(drift_line(model)).mark(f"models-drift-{model.name}").classes(f"drift-{level}")
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
    page["drift"] = ui.column().classes("w-full gap-0")
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
