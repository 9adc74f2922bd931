"""The pages through NiceGUI's user simulation, the Dapr side replaced by FakeBackend: the fleet lists
machines, a subscription's alert appears live, acknowledging changes state, the machine view has its
chart data, the models view shows the registry."""

from __future__ import annotations

import json

from nicegui import ui

from apps.common.names import TOPIC_ALERTS, TOPIC_EQUIPMENT_HEALTH, TOPIC_MODEL_UPDATES
from apps.common.profiles import TURBOFAN
from apps.common.registry import DriftReport, FeatureDrift
from apps.dashboard.domain import HistoryPoint, RegisteredModelInfo
from apps.dashboard.live import deliver
from tests.unit.dashboard.conftest import Dashboard
from tests.unit.dashboard.fakes import alert_event, alert_info, at, card, deviation, eventually, snapshot


def cloud_event(data: object) -> bytes:
    """A delivery as the sidecar posts it to a subscription route."""
    return json.dumps(
        {"id": "e1", "source": "equipment", "type": "com.dapr.event.sent", "data": data}
    ).encode()


def grid_rows(d: Dashboard, marker: str) -> list[dict]:
    (grid,) = d.user.find(marker=marker).elements
    assert isinstance(grid, ui.aggrid)
    return grid.options["rowData"]


def text(d: Dashboard, marker: str) -> str:
    (element,) = d.user.find(marker=marker).elements
    return element.text  # type: ignore[attr-defined]


async def test_fleet_lists_every_machine_worst_first_with_counts(dashboard: Dashboard) -> None:
    d = dashboard
    d.backend.snapshots = {
        s.equipment_id: s
        for s in (
            snapshot("m-ok", status="ok", rul=110),
            snapshot("m-crit", status="critical", rul=12),
            snapshot("m-warn", status="warning", rul=35),
        )
    }
    d.backend.alert_records = {a.id: a for a in [alert_info("open", equipment_id="m-crit")]}
    await d.user.open("/")
    rows = grid_rows(d, "fleet-grid")
    assert [r["equipment_id"] for r in rows] == ["m-crit", "m-warn", "m-ok"]
    assert rows[0]["open_alerts"] == 1 and rows[0]["predicted_rul"] == 12
    assert text(d, "count-critical") == "critical 1" and text(d, "count-ok") == "ok 1"
    await d.user.should_see("3 machines")


async def test_fleet_takes_live_health_without_reload(dashboard: Dashboard) -> None:
    d = dashboard
    d.backend.snapshots = {"m-1": snapshot("m-1", status="ok", rul=90, updated=1)}
    await d.user.open("/")
    body = cloud_event(snapshot("m-1", status="warning", rul=44, updated=2).model_dump(mode="json"))
    assert deliver(d.service.hub, TOPIC_EQUIPMENT_HEALTH, body) == "SUCCESS"
    deliver(
        d.service.hub,
        TOPIC_EQUIPMENT_HEALTH,
        cloud_event(snapshot("m-new", updated=2).model_dump(mode="json")),
    )
    await eventually(lambda: grid_rows(d, "fleet-grid")[0]["status"] == "warning", what="m-1 turns warning")
    await eventually(lambda: len(grid_rows(d, "fleet-grid")) == 2, what="a new machine appears")
    assert text(d, "count-warning") == "warning 1"


async def test_alert_pushed_by_the_subscription_appears_live(dashboard: Dashboard) -> None:
    d = dashboard
    d.backend.snapshots = {"m-1": snapshot("m-1", status="warning", rul=30)}
    await d.user.open("/alerts")
    assert grid_rows(d, "alerts-grid") == [] and text(d, "alerts-open") == "open 0"
    event = alert_event("open", equipment_id="m-1", severity="critical", updated=5)
    assert deliver(d.service.hub, TOPIC_ALERTS, cloud_event(event.model_dump(mode="json"))) == "SUCCESS"
    await eventually(
        lambda: [r["id"] for r in grid_rows(d, "alerts-grid")] == ["m-1:rul_low:1"], what="alert row"
    )
    assert text(d, "alerts-open") == "open 1"
    await d.user.should_see("critical alert on m-1: m-1: predicted RUL low (critical)")  # the notification


async def test_malformed_delivery_is_dropped_and_nothing_changes(dashboard: Dashboard) -> None:
    d = dashboard
    await d.user.open("/alerts")
    assert deliver(d.service.hub, TOPIC_ALERTS, cloud_event({"id": "nonsense"})) == "DROP"
    assert deliver(d.service.hub, TOPIC_ALERTS, b"not json") == "DROP"


async def test_acknowledge_from_the_page_changes_state_and_shows_who(dashboard: Dashboard) -> None:
    d = dashboard
    record = alert_info("open", equipment_id="m-1", severity="critical")
    d.backend.alert_records = {record.id: record}
    await d.user.open("/alerts")
    d.user.find(marker="alerts-grid").trigger("cellClicked", {"data": {"id": record.id}})
    await d.user.should_see(f"{record.id}: open, critical.")
    d.user.find(marker="ack-by").clear().type("bob")
    d.user.find(marker="ack").click()
    await eventually(
        lambda: grid_rows(d, "alerts-grid")[0]["state"] == "acknowledged", what="row acknowledged"
    )
    row = grid_rows(d, "alerts-grid")[0]
    assert row["acknowledged_by"] == "bob" and row["acknowledged_at"] == "2024-01-01 00:16:40"
    assert d.backend.alert_records[record.id].state == "acknowledged"
    assert text(d, "alerts-acknowledged") == "acknowledged 1" and text(d, "alerts-open") == "open 0"
    await d.user.should_see("2024-01-01 00:16:40 acknowledge by bob -> acknowledged")


async def test_acknowledging_a_cleared_alert_says_why_not(dashboard: Dashboard) -> None:
    d = dashboard
    record = alert_info("open", equipment_id="m-1")
    d.backend.alert_records = {record.id: record}
    await d.user.open("/alerts")
    d.user.find(marker="alerts-grid").trigger("cellClicked", {"data": {"id": record.id}})
    d.backend.alert_records[record.id] = alert_info("cleared", equipment_id="m-1")  # cleared meanwhile
    d.user.find(marker="ack").click()
    await d.user.should_see(f"not acknowledged: alert {record.id} is already cleared")


async def test_an_acknowledgement_reaches_other_open_pages(dashboard: Dashboard) -> None:
    d = dashboard
    d.backend.snapshots = {"m-1": snapshot("m-1", status="critical", rul=10)}
    record = alert_info("open", equipment_id="m-1", severity="critical")
    d.backend.alert_records = {record.id: record}
    await d.user.open("/machine/m-1")
    await d.service.acknowledge(record.id, "carol")  # as from another operator's alerts page
    await eventually(
        lambda: grid_rows(d, "machine-alerts")[0]["acknowledged_by"] == "carol",
        what="machine page sees the ack",
    )


async def test_machine_view_has_its_chart_data_with_thresholds(dashboard: Dashboard) -> None:
    d = dashboard
    d.backend.snapshots = {"m-1": snapshot("m-1", status="warning", rul=45, seq=59)}
    d.backend.histories = {
        "m-1": [
            HistoryPoint(seq=s, at=float(s), predicted_rul=104 - s, model_version=1) for s in range(30, 60)
        ]
    }
    sensors = [deviation("sensor_4", 5.1), deviation("sensor_11", -3.2)]
    d.backend.alert_records = {a.id: a for a in [alert_info("open", equipment_id="m-1", sensors=sensors)]}
    await d.user.open("/machine/m-1")
    (chart,) = d.user.find(marker="rul-chart").elements
    series = chart.options["series"][0]
    assert len(series["data"]) == 30 and series["data"][0] == [30, 74] and series["data"][-1] == [59, 45]
    marks = {m["name"]: m["yAxis"] for m in series["markLine"]["data"]}
    assert (
        marks["warning"] == TURBOFAN.thresholds.warning_rul
        and marks["critical"] == TURBOFAN.thresholds.critical_rul
    )
    (bars,) = d.user.find(marker="sensor-chart").elements
    assert bars.options["yAxis"]["data"] == ["sensor_11", "sensor_4"]  # largest |z| drawn on top
    assert [r["id"] for r in grid_rows(d, "machine-alerts")] == ["m-1:rul_low:1"]
    assert text(d, "machine-status") == "warning" and text(d, "machine-open_alerts") == "1"

    health = snapshot("m-1", status="critical", rul=15, seq=60, updated=9)
    deliver(d.service.hub, TOPIC_EQUIPMENT_HEALTH, cloud_event(health.model_dump(mode="json")))
    await eventually(lambda: series["data"][-1] == [60, 15], what="the live prediction is drawn")
    assert text(d, "machine-status") == "critical"


async def test_unknown_machine_and_bad_id(dashboard: Dashboard) -> None:
    d = dashboard
    await d.user.open("/machine/never-seen")
    await d.user.should_see("No readings, predictions or alerts for this machine (yet).")
    await d.user.open("/machine/bad id!")
    await d.user.should_see(marker="error")


async def test_backend_down_shows_why(dashboard: Dashboard) -> None:
    d = dashboard
    d.backend.down = True
    await d.user.open("/")
    await d.user.should_see("alerting is unavailable: fleet: connection refused")


async def test_models_view_lists_versions_cards_and_what_serves(dashboard: Dashboard) -> None:
    d = dashboard
    d.backend.models = [RegisteredModelInfo(name="turbofan-rul", champion=1, versions=[card(1, 14.2)])]
    d.backend.loaded = {"turbofan-rul": 1}
    await d.user.open("/models")
    assert [(r["version"], r["serving"], r["champion"]) for r in grid_rows(d, "models-grid")] == [
        (1, True, True)
    ]
    await d.user.should_see("serving: turbofan-rul v1")
    await d.user.should_see("turbofan-rul v1 model card")
    await d.user.should_see("turbofan-rul: feature drift not measured yet")

    drift = DriftReport(
        model="turbofan-rul",
        version=2,
        computed_at=at(7200),
        rows=400,
        machines=8,
        max_psi=0.31,
        level="significant",
        features=[
            FeatureDrift(name="f2", psi=0.31, level="significant"),
            FeatureDrift(name="f1", psi=0.02, level="stable"),
        ],
    )
    d.backend.models = [
        RegisteredModelInfo(
            name="turbofan-rul", champion=2, versions=[card(1, 14.2), card(2, 13.0)], drift=drift
        )
    ]
    update = {"name": "turbofan-rul", "version": 2, "promoted": True}
    assert deliver(d.service.hub, TOPIC_MODEL_UPDATES, cloud_event(update)) == "SUCCESS"
    await eventually(lambda: len(grid_rows(d, "models-grid")) == 2, what="v2 listed")
    await d.user.should_see("model turbofan-rul v2 registered and promoted")
    await d.user.should_see(
        "turbofan-rul v2: feature drift significant, max PSI 0.310 over 400 rows of 8 machines"
    )


async def test_ten_thousand_machines_load_and_a_burst_of_updates_is_one_transaction(
    dashboard: Dashboard,
) -> None:
    d = dashboard
    statuses = ["ok", "warning", "critical", "stale", "silent", "warming_up"]
    d.backend.snapshots = {
        f"sim-{i:05d}": snapshot(f"sim-{i:05d}", status=statuses[i % 6], rul=float(i % 125))
        for i in range(10_000)
    }
    await d.user.open("/")  # how fast is a benchmark's question, not a test's
    rows = grid_rows(d, "fleet-grid")
    assert len(rows) == 10_000 and rows[0]["status"] == "critical" and rows[-1]["status"] == "ok"
    assert text(d, "fleet-total") == "10000 machines"

    (grid,) = d.user.find(marker="fleet-grid").elements
    sent: list[tuple[str, dict]] = []
    grid.run_grid_method = lambda name, *args, **kw: sent.append((name, *args))  # type: ignore[method-assign]
    for i in range(0, 10_000, 10):  # 1,000 machines turn critical at once
        body = cloud_event(
            snapshot(f"sim-{i:05d}", status="critical", rul=5, updated=60).model_dump(mode="json")
        )
        deliver(d.service.hub, TOPIC_EQUIPMENT_HEALTH, body)
    critical = len({i for i in range(10_000) if statuses[i % 6] == "critical" or i % 10 == 0})
    await eventually(
        lambda: text(d, "count-critical") == f"critical {critical}", what="counts after the burst"
    )
    assert len(sent) == 1 and sent[0][0] == "applyTransaction"
    assert len(sent[0][1]["update"]) == 1000 and sent[0][1]["add"] == []


async def test_an_anomaly_machines_chart_draws_the_thresholds_its_served_card_learnt(
    dashboard: Dashboard,
) -> None:
    d = dashboard
    d.backend.snapshots = {
        "tfa-1": snapshot("tfa-1", status="ok", rul=0.4, seq=59, profile="turbofan-anomaly")
    }
    d.backend.histories = {
        "tfa-1": [HistoryPoint(seq=s, at=float(s), predicted_rul=0.4, model_version=2) for s in range(40, 60)]
    }
    learnt = {"warning": 0.58, "critical": 0.66}
    versions = [
        card(1, 0.0, name="turbofan-anomaly").model_copy(
            update={"alert_thresholds": {"warning": 0.5, "critical": 0.6}}
        ),
        card(2, 0.0, name="turbofan-anomaly").model_copy(update={"alert_thresholds": learnt}),
    ]
    d.backend.models = [RegisteredModelInfo(name="turbofan-anomaly", champion=1, versions=versions)]
    d.backend.loaded = {"turbofan-anomaly": 2}  # inference serves v2 (not the champion): its thresholds
    await d.user.open("/machine/tfa-1")
    (chart,) = d.user.find(marker="rul-chart").elements
    marks = {m["name"]: m["yAxis"] for m in chart.options["series"][0]["markLine"]["data"]}
    assert marks == {"warning": 0.58, "critical": 0.66, "clears below": 0.58}
    assert (await d.service.machine("tfa-1")).to_json()["thresholds"] == {**learnt, "clear": 0.58}

    # v3 is promoted while the page is open: its lines are drawn from the registry's card at once,
    # before inference (still serving v2 here) has swapped
    relearnt = {"warning": 0.7, "critical": 0.8}
    versions.append(card(3, 0.0, name="turbofan-anomaly").model_copy(update={"alert_thresholds": relearnt}))
    d.backend.models = [RegisteredModelInfo(name="turbofan-anomaly", champion=3, versions=versions)]
    update = {"name": "turbofan-anomaly", "version": 3, "promoted": True}
    assert deliver(d.service.hub, TOPIC_MODEL_UPDATES, cloud_event(update)) == "SUCCESS"

    def drawn() -> dict[str, float]:
        return {m["name"]: m["yAxis"] for m in chart.options["series"][0]["markLine"]["data"]}

    await eventually(
        lambda: drawn() == {"warning": 0.7, "critical": 0.8, "clears below": 0.7}, what="v3's lines"
    )
    assert chart.options["series"][0]["data"]  # the predictions are still drawn
    d.backend.loaded = {}  # inference serves no anomaly model: nothing learnt to draw
    assert (await d.service.machine("tfa-1")).to_json()["thresholds"] == {}
