"""What the dashboard shows, computed without HTTP or UI: fleet rows, worst-first order, counts per
status, alert rows, a machine's RUL chart with its thresholds, its top deviating sensors, and the
model registry's rows. The pages (pages.py) only put these into NiceGUI's AG Grid and ECharts.

Rows are plain JSON dicts because that is what AG Grid takes; every field is a column or feeds one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from apps.common.contracts import (
    Alert,
    AlertKind,
    HealthSnapshot,
    ModelCard,
    SensorDeviation,
    Severity,
    Status,
)
from apps.common.contracts import snapshot_is_newer as is_newer  # alerting's rule: the actor's order
from apps.common.profiles import (
    PROFILES,
    AlertThresholds,
    AnomalyThresholds,
    EquipmentProfile,
    ProbabilityThresholds,
)
from apps.common.registry import DriftReport

# Worst first: what needs an operator now, then what the platform cannot judge, then what is fine.
STATUS_ORDER: Final[tuple[str, ...]] = ("critical", "warning", "down", "stale", "silent", "warming_up", "ok")
STATUS_RANK: Final = {s: i for i, s in enumerate(STATUS_ORDER)}
assert set(STATUS_ORDER) == set(get_args(Status)), "every Status needs a place in STATUS_ORDER"

LifecycleState = Literal["open", "acknowledged", "cleared", "resolved"]
LIFECYCLE_STATES: Final[tuple[str, ...]] = get_args(LifecycleState)
_STATE_RANK: Final = {"open": 0, "acknowledged": 1, "cleared": 2, "resolved": 3}
ACTIVE: Final = ("open", "acknowledged")
_SEVERITY_RANK: Final = {"warning": 1, "critical": 2}
_EVENT_RANK: Final = {"open": 0, "escalate": 1, "clear": 2, "reopen": 3, "resolve": 4}


def fmt_time(value: datetime | float | None) -> str:
    """UTC, to the second, sortable as text: what the grids show and sort on."""
    if value is None:
        return ""
    at = datetime.fromtimestamp(value, UTC) if isinstance(value, (int, float)) else value.astimezone(UTC)
    return at.strftime("%Y-%m-%d %H:%M:%S")


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


# ------------------------------------------------------------------------------------------ alerts
class AlertChangeInfo(BaseModel):
    """One entry of an alert's history as alerting serves it: who did what when, and why."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    at: datetime
    action: str
    by: str
    state: LifecycleState
    severity: Severity
    note: str = ""


class AlertInfo(BaseModel):
    """An alert as alerting's API serves it (its `AlertRecord`), read leniently: fields the dashboard
    does not use are ignored, so alerting can add some without breaking the dashboard."""

    model_config = ConfigDict(extra="ignore", frozen=True, protected_namespaces=())

    id: str
    equipment_id: str
    kind: AlertKind
    episode: int
    severity: Severity
    state: LifecycleState
    last_event: str = "open"
    predicted_rul: float | None = None
    model_version: int | None = None
    top_sensors: list[SensorDeviation] = Field(default_factory=list)
    message: str = ""
    raised_at: datetime
    updated_at: datetime
    revision: int = 0
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    cleared_at: datetime | None = None
    cleared_reason: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    history: list[AlertChangeInfo] = Field(default_factory=list)

    @property
    def is_active(self) -> bool:
        return self.state in ACTIVE


def merge_alert_event(previous: AlertInfo | None, event: Alert) -> AlertInfo:
    """Show an `alerts` event at once, before alerting's API has it: the event's content, with the
    lifecycle alerting will give it (a clear clears, a reopen opens again, an operator's resolve is
    final; an escalation re-opens an acknowledged alert, otherwise an acknowledgement stands). A later
    page load reads alerting's record, the truth."""
    if previous is not None and (
        previous.revision,
        previous.updated_at,
        _EVENT_RANK.get(previous.last_event, 0),
    ) > (event.revision, event.updated_at, _EVENT_RANK[event.event]):
        return previous  # an older event delivered late
    state: LifecycleState = "open"
    if previous is not None and previous.state == "resolved":
        return previous
    if event.event == "resolve":  # the machine's life ended (an equipment event): final, as alerting has it
        state = "resolved"
    elif event.event == "clear" or (
        previous is not None and previous.state == "cleared" and event.event != "reopen"
    ):
        state = "cleared"
    elif previous is not None and previous.state == "acknowledged":
        rises = _SEVERITY_RANK[event.severity] > _SEVERITY_RANK[previous.severity]
        state = "open" if rises or event.event == "reopen" else "acknowledged"
    return AlertInfo(
        id=event.id,
        equipment_id=event.equipment_id,
        kind=event.kind,
        episode=event.episode,
        severity=event.severity,
        state=state,
        last_event=event.event,
        predicted_rul=event.predicted_rul,
        model_version=event.model_version,
        top_sensors=list(event.top_sensors),
        message=event.message,
        raised_at=min(event.raised_at, previous.raised_at) if previous else event.raised_at,
        updated_at=event.updated_at,
        revision=event.revision,
        history=previous.history if previous else [],
        acknowledged_at=previous.acknowledged_at if previous and state == "acknowledged" else None,
        acknowledged_by=previous.acknowledged_by if previous and state == "acknowledged" else None,
        cleared_at=event.updated_at if state == "cleared" else None,
        cleared_reason=("cleared" if event.event == "clear" else None) if state == "cleared" else None,
        resolved_at=event.updated_at if state == "resolved" else None,
        resolved_by="equipment" if state == "resolved" else None,
    )


def alert_row(alert: AlertInfo) -> dict[str, Any]:
    return {
        "id": alert.id,
        "equipment_id": alert.equipment_id,
        "kind": alert.kind,
        "episode": alert.episode,
        "severity": alert.severity,
        "state": alert.state,
        "state_rank": _STATE_RANK[alert.state],
        "predicted_rul": _round(alert.predicted_rul),
        "model_version": alert.model_version,
        "message": alert.message,
        "raised_at": fmt_time(alert.raised_at),
        "updated_at": fmt_time(alert.updated_at),
        "acknowledged_by": alert.acknowledged_by or "",
        "acknowledged_at": fmt_time(alert.acknowledged_at),
        "cleared_at": fmt_time(alert.cleared_at),
        "cleared_reason": alert.cleared_reason or "",
        "resolved_by": alert.resolved_by or "",
        "resolved_at": fmt_time(alert.resolved_at),
        "top_sensors": ", ".join(f"{s.sensor} ({s.z_score:+.1f})" for s in alert.top_sensors[:3]),
    }


def change_rows(alerts: Iterable[AlertInfo]) -> list[dict[str, Any]]:
    """Every change of these alerts, newest first: a machine's alert history, state change by change."""
    rows = [
        {
            "key": f"{a.id}/{i}",
            "alert_id": a.id,
            "at": fmt_time(c.at),
            "action": c.action,
            "by": c.by,
            "state": c.state,
            "severity": c.severity,
            "note": c.note,
        }
        for a in alerts
        for i, c in enumerate(a.history)
    ]
    rows.sort(key=lambda r: (r["at"], r["key"]), reverse=True)
    return rows


def describe_changes(alert: AlertInfo) -> list[str]:
    """An alert's history as lines an operator reads: '2024-01-01 00:00:10 acknowledge by ana: on it'."""
    return [
        f"{fmt_time(c.at)} {c.action} by {c.by} -> {c.state}" + (f": {c.note}" if c.note else "")
        for c in alert.history
    ]


def alert_sort_key(alert: AlertInfo) -> tuple[int, int, float, str]:
    """Open before acknowledged before the closed ones; critical first; newest raised first."""
    return (
        _STATE_RANK[alert.state],
        -_SEVERITY_RANK[alert.severity],
        -alert.raised_at.timestamp(),
        alert.id,
    )


def alert_rows(alerts: Iterable[AlertInfo]) -> list[dict[str, Any]]:
    return [alert_row(a) for a in sorted(alerts, key=alert_sort_key)]


def alert_counts(alerts: Iterable[AlertInfo]) -> dict[str, int]:
    counts = dict.fromkeys(LIFECYCLE_STATES, 0)
    for a in alerts:
        counts[a.state] += 1
    return counts


def top_sensors(alerts: Iterable[AlertInfo], limit: int = 8) -> list[dict[str, Any]]:
    """The sensors the machine's alerts blamed, each with its largest deviation (|z|), largest first."""
    best: dict[str, tuple[SensorDeviation, AlertInfo]] = {}
    for alert in alerts:
        for dev in alert.top_sensors:
            seen = best.get(dev.sensor)
            if seen is None or abs(dev.z_score) > abs(seen[0].z_score):
                best[dev.sensor] = (dev, alert)
    ranked = sorted(best.values(), key=lambda pair: (-abs(pair[0].z_score), pair[0].sensor))[:limit]
    return [
        {
            "sensor": dev.sensor,
            "z_score": round(dev.z_score, 2),
            "baseline_mean": round(dev.baseline_mean, 4),
            "current_mean": round(dev.current_mean, 4),
            "alert_id": alert.id,
        }
        for dev, alert in ranked
    ]


def sensor_chart(sensors: list[dict[str, Any]]) -> dict[str, Any]:
    """ECharts options: a horizontal bar per sensor, its deviation from the machine's baseline in stds."""
    ordered = list(reversed(sensors))  # ECharts draws the first category at the bottom
    return {
        "animation": False,
        "grid": {"left": 110, "right": 30, "top": 30, "bottom": 30},
        "tooltip": {"trigger": "axis"},
        "xAxis": {"type": "value", "name": "z (baseline stds)"},
        "yAxis": {"type": "category", "data": [s["sensor"] for s in ordered]},
        "series": [{"name": "deviation", "type": "bar", "data": [s["z_score"] for s in ordered]}],
    }


# ------------------------------------------------------------------------------------------- fleet
def fleet_row(snapshot: HealthSnapshot, open_alerts: int) -> dict[str, Any]:
    return {
        "equipment_id": snapshot.equipment_id,
        "profile": snapshot.profile,
        "status": snapshot.status,
        "status_rank": STATUS_RANK[snapshot.status],
        "predicted_rul": _round(snapshot.predicted_rul),
        "last_reading_at": fmt_time(snapshot.last_reading_at),
        "updated_at": fmt_time(snapshot.updated_at),
        "model_version": snapshot.model_version,
        "open_alerts": open_alerts,
        "readings": snapshot.readings_applied,
        "predictions_owed": snapshot.predictions_owed,
    }


def worst_first_key(row: Mapping[str, Any]) -> tuple[int, float, str]:
    """Status (critical first), then lowest predicted RUL (none last), then id."""
    rul = row["predicted_rul"]
    return row["status_rank"], float("inf") if rul is None else rul, row["equipment_id"]


def status_counts(statuses: Iterable[str]) -> dict[str, int]:
    counts = dict.fromkeys(STATUS_ORDER, 0)
    for s in statuses:
        counts[s] = counts.get(s, 0) + 1
    return counts


@dataclass
class Fleet:
    """The fleet as one page shows it: the latest snapshot and the active alerts of every machine.

    Loaded from alerting's API, then kept current by live events; each change returns the rows to
    push to the page's grid (None when the event changes nothing, e.g. an older snapshot).
    """

    snapshots: dict[str, HealthSnapshot] = field(default_factory=dict)
    active_alerts: dict[str, set[str]] = field(default_factory=dict)  # machine -> alert ids not cleared

    @classmethod
    def of(cls, snapshots: Iterable[HealthSnapshot], alerts: Iterable[AlertInfo]) -> Fleet:
        fleet = cls()
        for s in snapshots:
            if is_newer(fleet.snapshots.get(s.equipment_id), s):
                fleet.snapshots[s.equipment_id] = s
        for a in alerts:
            if a.is_active:
                fleet.active_alerts.setdefault(a.equipment_id, set()).add(a.id)
        return fleet

    def row(self, equipment_id: str) -> dict[str, Any] | None:
        snapshot = self.snapshots.get(equipment_id)
        if snapshot is None:
            return None
        return fleet_row(snapshot, len(self.active_alerts.get(equipment_id, ())))

    def rows(self) -> list[dict[str, Any]]:
        """Every machine's row, worst first."""
        rows = [fleet_row(s, len(self.active_alerts.get(i, ()))) for i, s in self.snapshots.items()]
        rows.sort(key=worst_first_key)
        return rows

    def counts(self) -> dict[str, int]:
        return status_counts(s.status for s in self.snapshots.values())

    def apply_health(self, snapshot: HealthSnapshot) -> dict[str, Any] | None:
        if not is_newer(self.snapshots.get(snapshot.equipment_id), snapshot):
            return None
        self.snapshots[snapshot.equipment_id] = snapshot
        return self.row(snapshot.equipment_id)

    def remove(self, equipment_id: str) -> bool:
        """A retired machine leaves the view; False if it was not in it."""
        self.active_alerts.pop(equipment_id, None)
        return self.snapshots.pop(equipment_id, None) is not None

    def apply_alert(self, equipment_id: str, alert_id: str, active: bool) -> dict[str, Any] | None:
        ids = self.active_alerts.setdefault(equipment_id, set())
        before = len(ids)
        if active:
            ids.add(alert_id)
        else:
            ids.discard(alert_id)
        return self.row(equipment_id) if len(ids) != before else None


# ---------------------------------------------------------------------------------------- machine
class HistoryPoint(BaseModel):
    """One prediction of a machine, as its actor's GetHistory returns it."""

    model_config = ConfigDict(extra="ignore", frozen=True, protected_namespaces=())

    seq: int
    at: float = Field(description="Unix time the prediction was made.")
    predicted_rul: float
    model_version: int


def extend_history(points: list[HistoryPoint], snapshot: HealthSnapshot, limit: int) -> bool:
    """Append the prediction a live snapshot carries, if it is a new one; True when it was."""
    if snapshot.predicted_rul is None or snapshot.prediction_stale or snapshot.model_version is None:
        return False
    if points and snapshot.last_seq <= points[-1].seq:
        return False
    points.append(
        HistoryPoint(
            seq=snapshot.last_seq,
            at=snapshot.updated_at.timestamp(),
            predicted_rul=snapshot.predicted_rul,
            model_version=snapshot.model_version,
        )
    )
    del points[:-limit]
    return True


Thresholds = AlertThresholds | ProbabilityThresholds | AnomalyThresholds


def thresholds_of(
    profile_name: str | None,
    profiles: Mapping[str, EquipmentProfile] = PROFILES,
    served: ModelCard | None = None,
) -> Thresholds:
    """The alert thresholds of a machine's profile (RUL ones when the profile is unknown). An anomaly
    profile's scores are learnt: those of `served`, the card of the version inference serves (what
    the actor alerts on), none without it."""
    profile = profiles.get(profile_name or "")
    if profile is None:
        return AlertThresholds()
    if isinstance(profile.thresholds, AnomalyThresholds):
        learnt = served.alert_thresholds if served is not None and served.name == profile.model_name else None
        return profile.thresholds.learned(learnt)
    return profile.thresholds


def learns_thresholds(
    profile_name: str | None, profiles: Mapping[str, EquipmentProfile] = PROFILES
) -> str | None:
    """The model whose served card holds the profile's thresholds (anomaly profiles), else None."""
    profile = profiles.get(profile_name or "")
    return profile.model_name if profile and isinstance(profile.thresholds, AnomalyThresholds) else None


def threshold_levels(thresholds: Thresholds) -> dict[str, float]:
    """The levels the chart draws: warning, critical, and where an open alert clears. An anomaly
    model's are learnt (its card's), not the profile's: none unless they are filled in."""
    if isinstance(thresholds, AnomalyThresholds):
        if thresholds.warning_score is None or thresholds.critical_score is None:
            return {}
        return {
            "warning": thresholds.warning_score,
            "critical": thresholds.critical_score,
            "clear": thresholds.warning_score,
        }
    if isinstance(thresholds, ProbabilityThresholds):
        return {
            "warning": thresholds.warning_probability,
            "critical": thresholds.critical_probability,
            "clear": thresholds.clear_probability,
        }
    return {
        "warning": thresholds.warning_rul,
        "critical": thresholds.critical_rul,
        "clear": thresholds.clear_rul,
    }


WARNING_COLOR: Final = "#f59e0b"
CRITICAL_COLOR: Final = "#dc2626"


def rul_series(points: Iterable[HistoryPoint]) -> list[list[float]]:
    return [[p.seq, round(p.predicted_rul, 2)] for p in points]


def rul_chart(points: Iterable[HistoryPoint], thresholds: Thresholds) -> dict[str, Any]:
    """ECharts options: the prediction per cycle (seq), with the warning and critical thresholds as
    horizontal lines and the level an open alert clears at dotted. A RUL model's value is the
    predicted RUL (lower is worse); a failure classifier's is a probability (higher is worse)."""
    levels = threshold_levels(thresholds)
    probability = isinstance(thresholds, ProbabilityThresholds)
    anomaly = isinstance(thresholds, AnomalyThresholds)  # higher is worse, and no fixed scale
    value_name = "anomaly score" if anomaly else "failure probability" if probability else "predicted RUL"
    styles = {
        "warning": ("warning", WARNING_COLOR, "dashed"),
        "critical": ("critical", CRITICAL_COLOR, "solid"),
        "clear": ("clears below" if probability or anomaly else "clears above", "#9ca3af", "dotted"),
    }

    def line(name: str, value: float, color: str, style: str) -> dict[str, Any]:
        return {
            "name": name,
            "yAxis": value,
            "lineStyle": {"color": color, "type": style, "width": 2},
            "label": {"formatter": f"{name} {value:g}", "position": "insideEndTop", "color": color},
        }

    return {
        "animation": False,
        "grid": {"left": 60, "right": 40, "top": 40, "bottom": 50},
        "tooltip": {"trigger": "axis"},
        "legend": {"data": [value_name], "top": 0},
        "xAxis": {
            "type": "value",
            "name": "cycle (seq)",
            "nameLocation": "middle",
            "nameGap": 30,
            "min": "dataMin",
        },
        "yAxis": {"type": "value", "name": "RUL (cycles)" if not (probability or anomaly) else value_name}
        | ({"min": 0, "max": 1} if probability else {} if anomaly else {"min": 0}),
        "series": [
            {
                "name": value_name,
                "type": "line",
                "showSymbol": False,
                "data": rul_series(points),
                "markLine": {
                    "silent": True,
                    "symbol": "none",
                    "data": [
                        line(name, levels[level], color, style)
                        for level, (name, color, style) in styles.items()
                        if level in levels
                    ],
                },
            }
        ],
    }


def machine_summary(snapshot: HealthSnapshot | None, alerts: Iterable[AlertInfo]) -> dict[str, Any]:
    """The machine view's header facts."""
    active = [a for a in alerts if a.is_active]
    if snapshot is None:
        return {"known": False, "open_alerts": len(active)}
    return {"known": True, **fleet_row(snapshot, len(active))}


# ----------------------------------------------------------------------------------------- models
class RegisteredModelInfo(BaseModel):
    """One model of the registry as training's `GET /v1/models` lists it."""

    model_config = ConfigDict(extra="ignore", frozen=True, protected_namespaces=())

    name: str
    champion: int | None = None
    versions: list[ModelCard] = Field(default_factory=list)
    drift: DriftReport | None = None


def drift_line(model: RegisteredModelInfo) -> str:
    """The champion's feature drift in one line (the retrain schedule measures it)."""
    d = model.drift
    if d is None:
        return f"{model.name}: feature drift not measured yet"
    top = ", ".join(f"{f.name} {f.psi:.3f}" for f in d.features[:3])
    return (
        f"{model.name} v{d.version}: feature drift {d.level}, max PSI {d.max_psi:.3f} over {d.basis()} "
        f"({fmt_time(d.computed_at)}); highest: {top}"
    )


def model_rows(models: Iterable[RegisteredModelInfo], serving: Mapping[str, int]) -> list[dict[str, Any]]:
    """One row per registered version, newest first within a model, flagged champion and serving."""
    rows: list[dict[str, Any]] = []
    for model in sorted(models, key=lambda m: m.name):
        for card in sorted(model.versions, key=lambda c: -c.version):
            rows.append(
                {
                    "key": f"{card.name}/v{card.version}",
                    "name": card.name,
                    "version": card.version,
                    "created_at": fmt_time(card.created_at),
                    "profile": card.profile,
                    "champion": card.version == model.champion,
                    "serving": serving.get(card.name) == card.version,
                    **{f"metric_{k}": round(v, 3) for k, v in sorted(card.metrics.items())},
                    "n_train_units": card.n_train_units,
                    "n_train_rows": card.n_train_rows,
                    "rul_cap": card.rul_cap,
                    "onnx_sha256": card.onnx_sha256[:12],
                }
            )
    return rows


def metric_names(models: Iterable[RegisteredModelInfo]) -> list[str]:
    return sorted({k for m in models for c in m.versions for k in c.metrics})


# ----------------------------------------------------------------------------------- notifications
class NotificationStatus(BaseModel):
    """Alerting's `GET /v1/notifications`, read leniently."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    binding: str = "notifications"
    failing: bool = False
    pending: int = 0
    delivered: int = 0
    last_delivered_at: datetime | None = None
    last_failure_at: datetime | None = None
    last_error: str | None = None
    abandoned: int = 0


def notification_line(status: NotificationStatus) -> tuple[str, bool]:
    """What the pages say about alert notifications, and whether it is a problem (shown in red)."""
    if status.failing:
        return (
            f"Notifications FAILING: {status.pending} not delivered, retrying; last error "
            f"{fmt_time(status.last_failure_at)} UTC: {status.last_error}",
            True,
        )
    given_up = f"; {status.abandoned} given up" if status.abandoned else ""
    if status.pending:
        return f"Notifications: {status.pending} being sent{given_up}", bool(status.abandoned)
    last = fmt_time(status.last_delivered_at)
    return (
        f"Notifications ok: {status.delivered} delivered" + (f", last {last} UTC" if last else "") + given_up,
        bool(status.abandoned),
    )
