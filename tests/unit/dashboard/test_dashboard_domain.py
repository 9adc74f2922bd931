"""The dashboard's rows, order, counts and charts, without HTTP or UI."""

from __future__ import annotations

import random

from apps.common.profiles import TURBOFAN, AnomalyThresholds, ProbabilityThresholds
from apps.dashboard.domain import (
    STATUS_ORDER,
    Fleet,
    HistoryPoint,
    RegisteredModelInfo,
    alert_counts,
    alert_rows,
    extend_history,
    fleet_row,
    learns_thresholds,
    merge_alert_event,
    model_rows,
    rul_chart,
    status_counts,
    thresholds_of,
    top_sensors,
    worst_first_key,
)
from tests.unit.dashboard.fakes import alert_event, alert_info, card, deviation, snapshot


def test_fleet_row_has_every_column_the_grid_shows() -> None:
    row = fleet_row(snapshot("m-1", status="warning", rul=41.26, updated=5, model_version=3), open_alerts=2)
    assert row == {
        "equipment_id": "m-1",
        "profile": "turbofan",
        "status": "warning",
        "status_rank": STATUS_ORDER.index("warning"),
        "predicted_rul": 41.3,
        "last_reading_at": "2024-01-01 00:00:05",
        "updated_at": "2024-01-01 00:00:05",
        "model_version": 3,
        "open_alerts": 2,
        "readings": 11,
        "predictions_owed": 0,
    }


def test_rows_are_worst_first_status_then_lowest_rul_then_id() -> None:
    snaps = [
        snapshot("ok-low", status="ok", rul=60),
        snapshot("warm", status="warming_up", rul=None),
        snapshot("crit-b", status="critical", rul=12),
        snapshot("crit-a", status="critical", rul=12),
        snapshot("crit-lowest", status="critical", rul=3),
        snapshot("warn", status="warning", rul=30),
        snapshot("stale", status="stale", rul=None),
        snapshot("silent", status="silent", rul=70),
        snapshot("ok-high", status="ok", rul=120),
    ]
    random.Random(3).shuffle(snaps)
    ids = [r["equipment_id"] for r in Fleet.of(snaps, []).rows()]
    assert ids == ["crit-lowest", "crit-a", "crit-b", "warn", "stale", "silent", "warm", "ok-low", "ok-high"]


def test_counts_have_every_status_even_when_zero() -> None:
    assert status_counts(["ok", "ok", "critical"]) == {
        "critical": 1,
        "warning": 0,
        "down": 0,
        "stale": 0,
        "silent": 0,
        "warming_up": 0,
        "ok": 2,
    }


def test_fleet_counts_active_alerts_per_machine_and_ignores_cleared() -> None:
    fleet = Fleet.of(
        [snapshot("a"), snapshot("b")],
        [
            alert_info("open", equipment_id="a", episode=1),
            alert_info("acknowledged", equipment_id="a", episode=2),
            alert_info("cleared", equipment_id="b", episode=1),
        ],
    )
    assert {r["equipment_id"]: r["open_alerts"] for r in fleet.rows()} == {"a": 2, "b": 0}


def test_live_health_keeps_only_the_newest_snapshot() -> None:
    fleet = Fleet.of([snapshot("a", updated=10, status="ok")], [])
    assert fleet.apply_health(snapshot("a", updated=5, status="critical")) is None  # late delivery
    row = fleet.apply_health(snapshot("a", updated=20, status="warning", rul=40))
    assert row is not None and row["status"] == "warning"
    assert fleet.counts()["warning"] == 1 and fleet.counts()["ok"] == 0
    new = fleet.apply_health(snapshot("new-machine", updated=1))
    assert new is not None and len(fleet.rows()) == 2


def test_live_alerts_change_the_open_alert_count_once() -> None:
    fleet = Fleet.of([snapshot("a")], [])
    row = fleet.apply_alert("a", "a:rul_low:1", active=True)
    assert row is not None and row["open_alerts"] == 1
    assert fleet.apply_alert("a", "a:rul_low:1", active=True) is None  # an escalation: same alert
    row = fleet.apply_alert("a", "a:rul_low:1", active=False)
    assert row is not None and row["open_alerts"] == 0
    assert fleet.apply_alert("unknown", "unknown:rul_low:1", active=True) is None  # no row to show it in


def test_ten_thousand_machines_sort_quickly() -> None:
    statuses = list(STATUS_ORDER)
    rng = random.Random(7)
    snaps = [
        snapshot(f"sim-{i:05d}", status=rng.choice(statuses), rul=round(rng.uniform(0, 125), 1))
        for i in range(10_000)
    ]
    rows = Fleet.of(snaps, []).rows()
    assert len(rows) == 10_000
    assert [worst_first_key(r) for r in rows] == sorted(worst_first_key(r) for r in rows)
    assert rows[0]["status"] == "critical" and rows[-1]["status"] == "ok"


def test_rul_chart_draws_history_and_the_profile_thresholds() -> None:
    points = [HistoryPoint(seq=s, at=float(s), predicted_rul=100 - s, model_version=1) for s in range(30, 40)]
    options = rul_chart(points, thresholds_of("turbofan"))
    series = options["series"][0]
    assert series["data"][0] == [30, 70] and series["data"][-1] == [39, 61] and len(series["data"]) == 10
    lines = {m["name"]: m["yAxis"] for m in series["markLine"]["data"]}
    assert lines == {
        "warning": TURBOFAN.thresholds.warning_rul,
        "critical": TURBOFAN.thresholds.critical_rul,
        "clears above": TURBOFAN.thresholds.clear_rul,
    }


def test_a_failure_classifiers_chart_draws_its_probability_thresholds() -> None:
    thresholds = ProbabilityThresholds(warning_probability=0.5, critical_probability=0.8, clear_margin=0.2)
    points = [HistoryPoint(seq=1, at=0, predicted_rul=0.3, model_version=1)]
    options = rul_chart(points, thresholds)
    series = options["series"][0]
    assert series["name"] == "failure probability" and options["yAxis"]["max"] == 1
    lines = {m["name"]: m["yAxis"] for m in series["markLine"]["data"]}
    assert lines == {"warning": 0.5, "critical": 0.8, "clears below": 0.3}


def test_unknown_profile_falls_back_to_default_thresholds() -> None:
    assert thresholds_of("no-such-profile").warning_rul == 50.0
    assert thresholds_of(None).critical_rul == 20.0


def test_live_snapshot_extends_history_with_new_predictions_only() -> None:
    points = [HistoryPoint(seq=10, at=0, predicted_rul=80, model_version=1)]
    assert not extend_history(points, snapshot(seq=10, rul=79), limit=5)  # same seq
    assert not extend_history(points, snapshot(seq=11, rul=None, status="warming_up"), limit=5)
    assert not extend_history(
        points, snapshot(seq=12, rul=70, prediction_stale=True, status="stale"), limit=5
    )
    assert extend_history(points, snapshot(seq=13, rul=60), limit=5)
    assert [(p.seq, p.predicted_rul) for p in points] == [(10, 80), (13, 60)]
    for s in range(14, 20):
        extend_history(points, snapshot(seq=s, rul=50), limit=5)
    assert [p.seq for p in points] == [15, 16, 17, 18, 19]


def test_top_sensors_take_each_sensors_largest_deviation_over_the_alerts() -> None:
    alerts = [
        alert_info(episode=1, sensors=[deviation("sensor_11", 3.0), deviation("sensor_4", -5.5)]),
        alert_info(episode=2, sensors=[deviation("sensor_11", 4.5), deviation("sensor_7", 1.0)]),
    ]
    rows = top_sensors(alerts, limit=2)
    assert [(r["sensor"], r["z_score"]) for r in rows] == [("sensor_4", -5.5), ("sensor_11", 4.5)]
    assert rows[1]["alert_id"] == "engine-001:rul_low:2"


def test_alert_rows_open_then_acknowledged_then_cleared_critical_and_newest_first() -> None:
    alerts = [
        alert_info("cleared", equipment_id="c", raised=50),
        alert_info("acknowledged", equipment_id="b", raised=10),
        alert_info("open", equipment_id="a-warn", raised=40),
        alert_info("open", equipment_id="a-old-crit", raised=5, severity="critical"),
        alert_info("open", equipment_id="a-new-crit", raised=30, severity="critical"),
    ]
    assert [r["equipment_id"] for r in alert_rows(alerts)] == ["a-new-crit", "a-old-crit", "a-warn", "b", "c"]
    assert alert_counts(alerts) == {"open": 3, "acknowledged": 1, "cleared": 1, "resolved": 0}
    acked = alert_rows([alerts[1]])[0]
    assert acked["acknowledged_by"] == "ann" and acked["acknowledged_at"] == "2024-01-01 00:00:00"


def test_alert_events_merge_as_alerting_will_record_them() -> None:
    opened = merge_alert_event(None, alert_event("open", updated=1))
    assert opened.state == "open" and opened.severity == "warning"
    acked = opened.model_copy(
        update={"state": "acknowledged", "acknowledged_by": "ann", "acknowledged_at": None}
    )
    assert merge_alert_event(acked, alert_event("open", updated=2)).state == "acknowledged"
    escalated = merge_alert_event(acked, alert_event("escalate", severity="critical", updated=3))
    assert (escalated.state, escalated.severity) == ("open", "critical")  # the operator must look again
    cleared = merge_alert_event(escalated, alert_event("clear", severity="critical", updated=4))
    assert cleared.state == "cleared" and cleared.cleared_reason == "cleared"
    assert merge_alert_event(cleared, alert_event("escalate", severity="critical", updated=3)) == cleared


def test_model_rows_flag_champion_and_serving_newest_first() -> None:
    models = [RegisteredModelInfo(name="turbofan-rul", champion=1, versions=[card(1, 14.0), card(2, 15.0)])]
    rows = model_rows(models, {"turbofan-rul": 1})
    assert [(r["version"], r["champion"], r["serving"]) for r in rows] == [(2, False, False), (1, True, True)]
    assert rows[1]["metric_rmse"] == 14.0 and rows[1]["key"] == "turbofan-rul/v1"


def test_a_live_snapshot_stamped_2030_does_not_pin_the_row() -> None:
    """The fleet page orders snapshots as alerting does, by the actor's revision, not by their clock."""
    fleet = Fleet.of([snapshot("e1", status="ok", rul=300.0, updated=10**9)], [])  # ~2055, no revision
    assert fleet.apply_health(snapshot("e1", status="critical", rul=9.0, updated=0, revision=4)) is not None
    assert fleet.snapshots["e1"].status == "critical"
    stale = snapshot("e1", status="ok", rul=300.0, updated=10**9, revision=3)
    assert fleet.apply_health(stale) is None, "an older revision, however late its time"


def test_an_anomaly_profiles_chart_draws_learnt_thresholds_only_once_known() -> None:
    points = [HistoryPoint(seq=1, at=0, predicted_rul=0.02, model_version=1)]
    unknown = rul_chart(points, thresholds_of("turbofan-anomaly"))  # the profile's: no scores yet
    assert unknown["series"][0]["name"] == "anomaly score"
    assert unknown["series"][0]["markLine"]["data"] == [] and "min" not in unknown["yAxis"]
    learnt = AnomalyThresholds().learned({"warning": 0.05, "critical": 0.08})
    lines = {m["name"]: m["yAxis"] for m in rul_chart(points, learnt)["series"][0]["markLine"]["data"]}
    assert lines == {"warning": 0.05, "critical": 0.08, "clears below": 0.05}


def test_an_anomaly_machines_thresholds_are_its_served_cards() -> None:
    served = card(3, 0.0, name="turbofan-anomaly").model_copy(
        update={"alert_thresholds": {"warning": 0.61, "critical": 0.7}}
    )
    learnt = thresholds_of("turbofan-anomaly", served=served)
    assert isinstance(learnt, AnomalyThresholds) and (learnt.warning_score, learnt.critical_score) == (
        0.61,
        0.7,
    )
    assert learnt.false_alarm_rate == thresholds_of("turbofan-anomaly").false_alarm_rate  # the profile's rest
    other = card(3, 0.0, name="turbofan-rul")  # another model's card says nothing of this profile's scores
    assert (
        thresholds_of(
            "turbofan-anomaly",
            served=other.model_copy(update=served.model_dump(include={"alert_thresholds"})),
        ).warning_score
        is None
    )
    assert thresholds_of("turbofan", served=served) == TURBOFAN.thresholds  # a RUL profile's are its own
    assert (
        learns_thresholds("turbofan-anomaly") == "turbofan-anomaly" and learns_thresholds("turbofan") is None
    )
    points = [HistoryPoint(seq=1, at=0, predicted_rul=0.5, model_version=3)]
    lines = {m["name"]: m["yAxis"] for m in rul_chart(points, learnt)["series"][0]["markLine"]["data"]}
    assert lines == {"warning": 0.61, "critical": 0.7, "clears below": 0.61}
