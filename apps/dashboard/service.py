"""The dashboard's use cases without HTTP or UI: load a view from the backend; acknowledge, resolve,
retire.

Pages (pages.py) and the JSON API (app.py) both call these, so what a page shows and what
`/api/...` answers are the same rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from apps.common.contracts import HealthSnapshot, ModelCard
from apps.common.registry import ModelUpdate
from apps.dashboard.domain import (
    AlertInfo,
    Fleet,
    HistoryPoint,
    NotificationStatus,
    RegisteredModelInfo,
    Thresholds,
    alert_counts,
    alert_rows,
    change_rows,
    learns_thresholds,
    machine_summary,
    metric_names,
    model_rows,
    rul_chart,
    sensor_chart,
    threshold_levels,
    thresholds_of,
    top_sensors,
)
from apps.dashboard.live import AlertChanged, LiveHub, MachineRetired
from apps.dashboard.ports import AlertNotFound, BackendUnavailable, DashboardBackend
from apps.dashboard.settings import DashboardSettings

log = logging.getLogger("dashboard")

# Alerting answers at most this many alerts per listing (its own limit).
MAX_LISTING = 100_000


@dataclass
class MachineView:
    equipment_id: str
    health: HealthSnapshot | None
    history: list[HistoryPoint]
    alerts: dict[str, AlertInfo]
    thresholds: Thresholds

    @property
    def known(self) -> bool:
        return self.health is not None or bool(self.history) or bool(self.alerts)

    def summary(self) -> dict[str, Any]:
        return machine_summary(self.health, self.alerts.values())

    def chart(self) -> dict[str, Any]:
        return rul_chart(self.history, self.thresholds)

    def sensors(self) -> list[dict[str, Any]]:
        return top_sensors(self.alerts.values())

    def sensor_chart(self) -> dict[str, Any]:
        return sensor_chart(self.sensors())

    def alert_rows(self) -> list[dict[str, Any]]:
        return alert_rows(self.alerts.values())

    def change_rows(self) -> list[dict[str, Any]]:
        return change_rows(self.alerts.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "equipment_id": self.equipment_id,
            "summary": self.summary(),
            "thresholds": threshold_levels(self.thresholds),
            "chart": self.chart(),
            "sensors": self.sensors(),
            "alerts": self.alert_rows(),
            "changes": self.change_rows(),
        }


@dataclass
class ModelsView:
    models: list[RegisteredModelInfo]
    serving: dict[str, int]
    serving_error: str | None = None

    def rows(self) -> list[dict[str, Any]]:
        return model_rows(self.models, self.serving)

    def metric_names(self) -> list[str]:
        return metric_names(self.models)

    def to_json(self) -> dict[str, Any]:
        return {
            "serving": self.serving,
            "serving_error": self.serving_error,
            "rows": self.rows(),
            "models": [m.model_dump(mode="json") for m in self.models],
        }


@dataclass
class DashboardService:
    settings: DashboardSettings
    hub: LiveHub = field(default_factory=LiveHub)
    backend_: DashboardBackend | None = None
    _card_reads: dict[tuple[str, int], asyncio.Future[ModelCard | None]] = field(
        default_factory=dict, init=False, repr=False
    )

    @property
    def backend(self) -> DashboardBackend:
        if self.backend_ is None:
            raise BackendUnavailable("the dashboard is still starting (no Dapr client yet)")
        return self.backend_

    async def fleet(self) -> Fleet:
        snapshots, open_, acknowledged = await asyncio.gather(
            self.backend.fleet(),
            self.backend.alerts(state="open", limit=MAX_LISTING),
            self.backend.alerts(state="acknowledged", limit=MAX_LISTING),
        )
        return Fleet.of(snapshots, [*open_, *acknowledged])

    async def alerts(self) -> list[AlertInfo]:
        return await self.backend.alerts(limit=self.settings.alert_limit)

    async def alerts_json(self) -> dict[str, Any]:
        alerts = await self.alerts()
        return {"counts": alert_counts(alerts), "rows": alert_rows(alerts)}

    async def machine(self, equipment_id: str) -> MachineView:
        health, history, alerts = await asyncio.gather(
            self.backend.health(equipment_id),
            self.backend.history(equipment_id, self.settings.history_points),
            self.backend.alerts(equipment_id=equipment_id, limit=self.settings.alert_limit),
        )
        profile = health.profile if health else None
        served = await self._served_card(learns_thresholds(profile))
        return MachineView(
            equipment_id=equipment_id,
            health=health,
            history=history,
            alerts={a.id: a for a in alerts},
            thresholds=thresholds_of(profile, served=served),
        )

    async def follow_model(self, view: MachineView, update: ModelUpdate) -> bool:
        """After a `model-updates` event: when the promoted version is the model whose card holds the
        view's thresholds (an anomaly machine's), take the thresholds it learnt; True if they changed.

        The card is the registry's for that version, not inference's served one: inference swaps on
        the same event and may not have loaded it yet when this runs."""
        profile = view.health.profile if view.health else None
        if not update.promoted or update.name != learns_thresholds(profile):
            return False
        try:
            card = await self._registered_card(update.name, update.version)
        except BackendUnavailable as exc:  # keep drawing the old ones; a reload reads them again
            log.info("no thresholds of %s v%d for the chart: %s", update.name, update.version, exc)
            return False
        if card is None:
            return False
        thresholds = thresholds_of(profile, served=card)
        changed, view.thresholds = thresholds != view.thresholds, thresholds
        return changed

    async def _registered_card(self, name: str, version: int) -> ModelCard | None:
        """The registry's card of `name` v`version`, read once for every page that asks at the same
        time (each open page of the model's machines does, on the same event) and kept: a registered
        card never changes."""
        key = (name, version)
        read = self._card_reads.get(key)
        if read is None:
            read = self._card_reads[key] = asyncio.ensure_future(self._read_card(name, version))
            read.add_done_callback(lambda done: self._forget_failed(key, done))
            while len(self._card_reads) > 8:  # the few versions promoted lately
                self._card_reads.pop(next(iter(self._card_reads)))
        return await asyncio.shield(read)

    async def _read_card(self, name: str, version: int) -> ModelCard | None:
        models = await self.backend.registered_models()
        cards = [c for m in models if m.name == name for c in m.versions if c.version == version]
        return cards[0] if cards else None

    def _forget_failed(self, key: tuple[str, int], done: asyncio.Future[ModelCard | None]) -> None:
        failed = done.cancelled() or done.exception() is not None or done.result() is None
        if failed and self._card_reads.get(key) is done:
            del self._card_reads[key]  # asked again next time

    async def _served_card(self, name: str | None) -> ModelCard | None:
        """The card inference serves for `name` (an anomaly model's learnt thresholds are in it); None
        when there is no such model or inference is away: the chart then draws no threshold."""
        if name is None:
            return None
        try:
            return await self.backend.served_card(name)
        except BackendUnavailable as exc:
            log.info("no thresholds for the chart: %s", exc)
            return None

    async def models(self) -> ModelsView:
        registered = await self.backend.registered_models()
        try:
            serving, error = await self.backend.serving(), None
        except BackendUnavailable as exc:  # the registry is readable while inference is away
            serving, error = {}, str(exc)
        return ModelsView(registered, serving, error)

    async def acknowledge(self, alert_id: str, by: str | None, note: str = "") -> AlertInfo:
        """Acknowledge through alerting, then tell every open page (no topic carries acknowledgements)."""
        record = await self.backend.acknowledge(alert_id, self._operator(by), note.strip())
        self.hub.publish(AlertChanged(record=record))
        return record

    async def resolve(self, alert_id: str, by: str | None, note: str = "") -> AlertInfo:
        """Close an alert the machine has not cleared, through alerting, and tell every open page."""
        record = await self.backend.resolve(alert_id, self._operator(by), note.strip())
        self.hub.publish(AlertChanged(record=record))
        return record

    async def retire(self, equipment_id: str, by: str | None, note: str = "") -> list[str]:
        """Stop watching a machine; every open page drops it and shows its alerts resolved."""
        resolved = await self.backend.retire(equipment_id, self._operator(by), note.strip())
        self.hub.publish(MachineRetired(equipment_id))
        for alert_id in resolved:
            # Done either way: a page that misses one shows it resolved on its next load.
            with contextlib.suppress(BackendUnavailable, AlertNotFound):
                self.hub.publish(AlertChanged(record=await self.backend.alert(alert_id)))
        return resolved

    async def notifications(self) -> NotificationStatus:
        return await self.backend.notifications()

    def _operator(self, by: str | None) -> str:
        return (by or "").strip() or self.settings.default_operator
