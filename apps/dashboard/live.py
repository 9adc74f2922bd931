"""Live updates: pub/sub deliveries become events for the pages that are open right now.

`deliver` decodes a delivered CloudEvent (what app.py hands it) and publishes it on the `LiveHub`;
each open page subscribes a `Coalescer`, which collects events and flushes them to the page at most
once per interval (the latest event per machine, alert or model wins), so a fleet of 10,000 machines
reporting every few seconds costs each page one grid transaction per interval, not one per event.
Nothing here knows HTTP or NiceGUI.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from apps.common.bulksub import BulkEntry
from apps.common.contracts import Alert, HealthSnapshot
from apps.common.names import TOPIC_ALERTS, TOPIC_EQUIPMENT_HEALTH, TOPIC_MODEL_UPDATES
from apps.common.registry import ModelUpdate
from apps.dashboard.domain import AlertInfo

log = logging.getLogger("dashboard")


@dataclass(frozen=True, slots=True)
class HealthChanged:
    snapshot: HealthSnapshot

    @property
    def key(self) -> tuple[str, str]:
        return ("health", self.snapshot.equipment_id)


@dataclass(frozen=True, slots=True)
class AlertChanged:
    """An `alerts` event (`event` set), or a record alerting returned (an operator's action here)."""

    event: Alert | None = None
    record: AlertInfo | None = None

    @property
    def alert_id(self) -> str:
        return self.event.id if self.event is not None else self.record.id  # type: ignore[union-attr]

    @property
    def equipment_id(self) -> str:
        return self.event.equipment_id if self.event is not None else self.record.equipment_id  # type: ignore[union-attr]

    @property
    def key(self) -> tuple[str, str]:
        return ("alert", self.alert_id)


@dataclass(frozen=True, slots=True)
class ModelChanged:
    update: ModelUpdate

    @property
    def key(self) -> tuple[str, str]:
        return ("model", f"{self.update.name}/{self.update.version}")


@dataclass(frozen=True, slots=True)
class MachineRetired:
    """An operator retired a machine through this dashboard (no topic carries retirements)."""

    equipment_id: str

    @property
    def key(self) -> tuple[str, str]:
        return ("retired", self.equipment_id)


Event = HealthChanged | AlertChanged | ModelChanged | MachineRetired
Listener = Callable[[Event], None]


class LiveHub:
    """Fan-out of events to the listeners (open pages) of this process."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    @property
    def listening(self) -> int:
        return len(self._listeners)

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def publish(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # one broken page must not starve the others
                log.exception("a live listener failed on %s", event.key)


class MalformedDelivery(ValueError):
    pass


def _event_data(body: bytes) -> Any:
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise MalformedDelivery(f"body is not JSON: {exc}") from exc
    return _cloudevent_data(event)


def _cloudevent_data(event: Any) -> Any:
    if not isinstance(event, dict):
        raise MalformedDelivery("body is not a CloudEvent object")
    data = event.get("data")
    if isinstance(data, str):  # a JSON text published without a content type
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise MalformedDelivery(f"data is not JSON: {exc}") from exc
    return data


def decode(topic: str, body: bytes) -> Event:
    """The event a delivery of `topic` carries; MalformedDelivery if it is not one."""
    return _decode_data(topic, _event_data(body))


def _decode_data(topic: str, data: Any) -> Event:
    try:
        if topic == TOPIC_EQUIPMENT_HEALTH:
            return HealthChanged(HealthSnapshot.model_validate(data))
        if topic == TOPIC_ALERTS:
            return AlertChanged(event=Alert.model_validate(data))
        if topic == TOPIC_MODEL_UPDATES:
            return ModelChanged(ModelUpdate.model_validate(data))
    except ValidationError as exc:
        raise MalformedDelivery(f"not a valid {topic} message: {exc.error_count()} errors") from exc
    raise MalformedDelivery(f"unexpected topic {topic!r}")


def deliver(hub: LiveHub, topic: str, body: bytes) -> str:
    """Handle one pub/sub delivery; the status to answer Dapr with.

    The dashboard only shows what is live: with no page open there is nothing to do, and a message
    that cannot be decoded is dropped (alerting keeps the dead letters), never retried.
    """
    if not hub.listening:
        return "SUCCESS"
    try:
        event = decode(topic, body)
    except MalformedDelivery as exc:
        log.warning("dropping a %s delivery: %s", topic, exc)
        return "DROP"
    hub.publish(event)
    return "SUCCESS"


def deliver_bulk(hub: LiveHub, topic: str, entries: list[BulkEntry]) -> list[tuple[str, str]]:
    """Handle a bulk delivery (bulkSubscribe): each entry's status, as `deliver` answers one."""
    if not hub.listening:
        return [(entry.entry_id, "SUCCESS") for entry in entries]
    statuses: list[tuple[str, str]] = []
    for entry in entries:
        try:
            event = _decode_data(topic, _cloudevent_data(entry.event))
        except MalformedDelivery as exc:
            log.warning("dropping a %s delivery: %s", topic, exc)
            statuses.append((entry.entry_id, "DROP"))
            continue
        hub.publish(event)
        statuses.append((entry.entry_id, "SUCCESS"))
    return statuses


class Coalescer:
    """Collects events and calls `flush` with them (latest per key, in arrival order of their keys)
    at most once per `interval` seconds, on the running event loop; `hold()` defers flushing until
    `release()` (a page still loading its data)."""

    def __init__(self, flush: Callable[[list[Event]], None], interval: float) -> None:
        self._flush = flush
        self.interval = interval
        self._pending: dict[tuple[str, str], Event] = {}
        self._handle: asyncio.TimerHandle | None = None
        self._held = False
        self.closed = False

    def __call__(self, event: Event) -> None:
        if self.closed:
            return
        self._pending.pop(event.key, None)  # re-insert: keep keys in the order of their latest event
        self._pending[event.key] = event
        self._schedule()

    def hold(self) -> None:
        self._held = True

    def release(self) -> None:
        self._held = False
        self._schedule()

    def close(self) -> None:
        self.closed = True
        self._pending.clear()
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self) -> None:
        if self._handle is None and self._pending and not self._held and not self.closed:
            self._handle = asyncio.get_running_loop().call_later(self.interval, self._run)

    def _run(self) -> None:
        self._handle = None
        if self._held or self.closed:
            return
        events, self._pending = list(self._pending.values()), {}
        try:
            self._flush(events)
        except Exception:
            log.exception("pushing %d live events to a page failed", len(events))
        self._schedule()
