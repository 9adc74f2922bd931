"""Builders for alerting tests: Alert events and HealthSnapshots as the EquipmentActor publishes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from apps.common.contracts import Alert, AlertReading, HealthSnapshot, SensorDeviation

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def alert(
    event: str = "open",
    *,
    equipment_id: str = "engine-001",
    kind: str = "rul_low",
    episode: int = 1,
    severity: str = "warning",
    raised: float = 0,
    updated: float = 0,
    rul: float | None = 42.0,
    revision: int = 0,
    seq: int | None = None,
) -> Alert:
    """An event as the actor publishes it; `seq` adds the reading that decided it (at `updated`)."""
    reading = None if seq is None else AlertReading(seq=seq, timestamp=at(updated), predicted_rul=rul or 0.0)
    return Alert(
        id=Alert.make_id(equipment_id, kind, episode),
        equipment_id=equipment_id,
        kind=kind,  # type: ignore[arg-type]
        episode=episode,
        revision=revision,
        severity=severity,  # type: ignore[arg-type]
        state="cleared" if event == "clear" else "open",
        event=event,  # type: ignore[arg-type]
        reading=reading,
        predicted_rul=rul,
        model_version=1,
        top_sensors=[SensorDeviation(sensor="sensor_11", z_score=4.2, baseline_mean=47.3, current_mean=48.1)],
        message=f"{equipment_id}: {event} {severity}",
        raised_at=at(raised),
        updated_at=at(updated),
    )


def snapshot(
    equipment_id: str = "engine-001", *, updated: float = 0, status: str = "ok", **kw: Any
) -> HealthSnapshot:
    fields: dict[str, Any] = {
        "equipment_id": equipment_id,
        "profile": "turbofan",
        "last_seq": 10,
        "readings_applied": 11,
        "duplicates": 0,
        "predicted_rul": 99.0,
        "status": status,
        "updated_at": at(updated),
        **kw,
    }
    return HealthSnapshot(**fields)
