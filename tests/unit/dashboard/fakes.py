"""An in-memory DashboardBackend and builders: the Dapr side of the dashboard, replaced at its interface."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from apps.common.contracts import Alert, HealthSnapshot, ModelCard, SensorDeviation
from apps.dashboard.domain import (
    AlertChangeInfo,
    AlertInfo,
    HistoryPoint,
    LifecycleState,
    NotificationStatus,
    RegisteredModelInfo,
)
from apps.dashboard.ports import ActionRefused, AlertNotFound, BackendUnavailable
from apps.dashboard.signin import Session

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def snapshot(
    equipment_id: str = "engine-001",
    *,
    status: str = "ok",
    rul: float | None = 99.0,
    updated: float = 0,
    seq: int = 10,
    **kw: Any,
) -> HealthSnapshot:
    fields: dict[str, Any] = {
        "equipment_id": equipment_id,
        "profile": "turbofan",
        "last_seq": seq,
        "readings_applied": seq + 1,
        "duplicates": 0,
        "predicted_rul": rul,
        "model_version": 1 if rul is not None else None,
        "status": status,
        "last_reading_at": at(updated),
        "updated_at": at(updated),
        **kw,
    }
    return HealthSnapshot(**fields)


def deviation(sensor: str, z: float) -> SensorDeviation:
    return SensorDeviation(sensor=sensor, z_score=z, baseline_mean=1.0, current_mean=1.0 + z / 10)


def alert_event(
    event: str = "open",
    *,
    equipment_id: str = "engine-001",
    episode: int = 1,
    severity: str = "warning",
    raised: float = 0,
    updated: float = 0,
    sensors: list[SensorDeviation] | None = None,
) -> Alert:
    return Alert(
        id=Alert.make_id(equipment_id, "rul_low", episode),
        equipment_id=equipment_id,
        kind="rul_low",
        episode=episode,
        severity=severity,  # type: ignore[arg-type]
        state="cleared" if event == "clear" else "open",
        event=event,  # type: ignore[arg-type]
        predicted_rul=18.0 if severity == "critical" else 45.0,
        model_version=1,
        top_sensors=sensors if sensors is not None else [deviation("sensor_11", 4.2)],
        message=f"{equipment_id}: predicted RUL low ({severity})",
        raised_at=at(raised),
        updated_at=at(updated),
    )


def alert_info(state: LifecycleState = "open", **kw: Any) -> AlertInfo:
    event = alert_event("clear" if state == "cleared" else "open", **kw)
    data = event.model_dump() | {"state": state, "last_event": event.event}
    if state == "acknowledged":
        data |= {"acknowledged_at": event.updated_at, "acknowledged_by": "ann"}
    if state == "cleared":
        data |= {"cleared_at": event.updated_at, "cleared_reason": "cleared"}
    return AlertInfo.model_validate(data)


def card(version: int, rmse: float, name: str = "turbofan-rul") -> ModelCard:
    digest = hashlib.sha256(f"{name}{version}".encode()).hexdigest()
    return ModelCard(
        name=name,
        version=version,
        created_at=at(version * 3600),
        profile="turbofan",
        feature_names=["f1", "f2"],
        metrics={"rmse": rmse, "mae": rmse * 0.7},
        training_data_fingerprint=digest,
        rul_cap=125.0,
        n_train_rows=17_000,
        n_train_units=100,
        params={"n_estimators": 200},
        onnx_sha256=digest,
    )


class FakeBackend:
    """The DashboardBackend protocol over dicts, acting as alerting does (409 once cleared or resolved;
    each action kept in the alert's history)."""

    def __init__(self) -> None:
        self.snapshots: dict[str, HealthSnapshot] = {}
        self.alert_records: dict[str, AlertInfo] = {}
        self.histories: dict[str, list[HistoryPoint]] = {}
        self.models: list[RegisteredModelInfo] = []
        self.loaded: dict[str, int] = {}
        self.notification_status = NotificationStatus()
        self.retired: list[str] = []
        self.down = False
        self.calls: list[str] = []
        self.keys: dict[str, Session] = {}  # API key -> what the gateway's whoami says of it

    def _call(self, what: str) -> None:
        self.calls.append(what)
        if self.down:
            raise BackendUnavailable(f"{what}: connection refused")

    async def whoami(self, key: str) -> Session | None:
        self._call("whoami")
        return self.keys.get(key)

    async def fleet(self) -> list[HealthSnapshot]:
        self._call("fleet")
        return sorted(self.snapshots.values(), key=lambda s: s.equipment_id)

    async def alerts(
        self, *, state: LifecycleState | None = None, equipment_id: str | None = None, limit: int = 1000
    ) -> list[AlertInfo]:
        self._call("alerts")
        found = [
            a
            for a in self.alert_records.values()
            if (state is None or a.state == state)
            and (equipment_id is None or a.equipment_id == equipment_id)
        ]
        return sorted(found, key=lambda a: a.raised_at, reverse=True)[:limit]

    async def alert(self, alert_id: str) -> AlertInfo:
        self._call("alert")
        if alert_id not in self.alert_records:
            raise AlertNotFound(f"no alert with id {alert_id!r}")
        return self.alert_records[alert_id]

    async def acknowledge(self, alert_id: str, by: str, note: str) -> AlertInfo:
        self._call("acknowledge")
        return self._act(alert_id, "acknowledge", by, note)

    async def resolve(self, alert_id: str, by: str, note: str) -> AlertInfo:
        self._call("resolve")
        return self._act(alert_id, "resolve", by, note)

    def _act(self, alert_id: str, action: str, by: str, note: str) -> AlertInfo:
        record = self.alert_records.get(alert_id)
        if record is None:
            raise AlertNotFound(f"no alert with id {alert_id!r}")
        if record.state in ("cleared", "resolved"):
            raise ActionRefused(f"alert {alert_id} is already {record.state}")
        state: LifecycleState = "resolved" if action == "resolve" else "acknowledged"
        change = AlertChangeInfo(
            at=at(1000), action=action, by=by, state=state, severity=record.severity, note=note
        )
        update: dict[str, Any] = {
            "state": state,
            "history": [*record.history, change],
            "updated_at": at(1000),
        }
        if action == "resolve":
            update |= {"resolved_by": by, "resolved_at": at(1000)}
        elif record.state == "open":
            update |= {"acknowledged_by": by, "acknowledged_at": at(1000)}
        self.alert_records[alert_id] = record = record.model_copy(update=update)
        return record

    async def retire(self, equipment_id: str, by: str, note: str) -> list[str]:
        self._call("retire")
        if equipment_id not in self.snapshots:
            raise AlertNotFound(f"no machine {equipment_id!r}")
        del self.snapshots[equipment_id]
        self.retired.append(equipment_id)
        open_ = [a.id for a in self.alert_records.values() if a.equipment_id == equipment_id and a.is_active]
        for alert_id in open_:
            self._act(alert_id, "resolve", by, f"machine retired: {note}")
        return open_

    async def notifications(self) -> NotificationStatus:
        self._call("notifications")
        return self.notification_status

    async def health(self, equipment_id: str) -> HealthSnapshot | None:
        self._call("health")
        return self.snapshots.get(equipment_id)

    async def history(self, equipment_id: str, n: int) -> list[HistoryPoint]:
        self._call("history")
        return self.histories.get(equipment_id, [])[-n:]

    async def registered_models(self) -> list[RegisteredModelInfo]:
        self._call("registered_models")
        return self.models

    async def serving(self) -> dict[str, int]:
        self._call("serving")
        return dict(self.loaded)

    async def served_card(self, name: str) -> ModelCard | None:
        """The card of the loaded version, as inference answers it (None when it serves none)."""
        self._call("served_card")
        version = self.loaded.get(name)
        cards = [c for m in self.models if m.name == name for c in m.versions if c.version == version]
        return cards[0] if cards else None

    async def close(self) -> None:
        pass


async def eventually(condition: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Await `condition()` becoming truthy (the event loop runs meanwhile), failing after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        await asyncio.sleep(0.02)
    raise AssertionError(f"not met after {timeout}s: {what or condition} (last {last!r})")
