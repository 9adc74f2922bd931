"""What operators are told about a machine's alerts: the wire `Alert` of each transition and its line.

The actor, not a message, is the source of truth of its alerts: the last event of each kind is kept
in its state and published again (alerting dedupes by id and time), so alerting converges on it.
"""

from __future__ import annotations

from apps.common.contracts import Alert, AlertReading, SensorDeviation
from apps.common.profiles import EquipmentProfile
from apps.equipment.alarms import AlertTransition
from apps.equipment.domain import TOP_SENSORS, EquipmentState, from_epoch, top_deviating_sensors


def alert_message(
    equipment_id: str, profile: EquipmentProfile, transition: AlertTransition, prediction: float | None
) -> str:
    """The one line an operator reads about an alert event."""
    if transition.kind == "rul_low":
        if prediction is None:
            what = "prediction past its threshold"
        elif profile.model_kind == "failure":
            what = f"failure probability {prediction:.2f}"
        elif profile.model_kind == "anomaly":
            what = f"anomaly score {prediction:.3f}, unlike its healthy early life"
        else:
            what = f"predicted RUL {prediction:.0f} cycles"
        text = f"{equipment_id}: {what} ({transition.severity})"
    elif transition.kind == "stale":
        waited = profile.stale_after_seconds
        text = f"{equipment_id}: inference has not answered for {waited:.0f} s; predictions owed"
    else:
        text = f"{equipment_id}: no readings for {profile.silence_after_seconds:.0f} s"
    if transition.event == "clear":
        return f"{text}; cleared"
    if transition.event == "resolve":
        return f"{text}; resolved: {transition.reason}"
    if transition.event == "reopen":
        return f"{text}; back within {profile.reopen_within_seconds:.0f} s of clearing"
    return text


def build_alert(state: EquipmentState, transition: AlertTransition, k: int = TOP_SENSORS) -> Alert:
    """The wire `Alert` for a transition, timed and described by the reading that decided it (its
    prediction and the sensors that moved most since the baseline as of its window), if any."""
    top: list[SensorDeviation] = []
    if transition.top_sensors is not None:
        top = list(transition.top_sensors[:k])
    elif transition.kind == "rul_low" and state.baseline is not None and state.recent.window_full:
        sensors = state.profile.informative_sensors
        current = state.sensors(state.recent.current_window())
        top = top_deviating_sensors(state.baseline, current, sensors, k)
    rul = state.predicted_rul if transition.predicted_rul is None else transition.predicted_rul
    reading = None
    if transition.seq is not None and transition.predicted_rul is not None:
        at = from_epoch(transition.at)
        reading = AlertReading(seq=transition.seq, timestamp=at, predicted_rul=transition.predicted_rul)
    return Alert(
        id=Alert.make_id(state.equipment_id, transition.kind, transition.episode),
        equipment_id=state.equipment_id,
        kind=transition.kind,
        episode=transition.episode,
        revision=transition.revision,
        severity=transition.severity,
        state="cleared" if transition.event in ("clear", "resolve") else "open",
        event=transition.event,
        reading=reading,
        predicted_rul=rul,
        model_version=state.model_version,
        top_sensors=top,
        message=alert_message(state.equipment_id, state.profile, transition, rul),
        raised_at=from_epoch(transition.raised_at),
        updated_at=from_epoch(transition.at),
    )


def remember_alert(state: EquipmentState, alert: Alert) -> None:
    """Keep the last event of each alert kind: the actor, not a message, is the source of truth."""
    state.last_alerts[alert.kind] = alert.model_dump_json()


def alerts_to_reannounce(state: EquipmentState) -> list[Alert]:
    """The last event of every alert kind, to publish again (alerting dedupes by id and time)."""
    return [Alert.model_validate_json(text) for _, text in sorted(state.last_alerts.items())]
