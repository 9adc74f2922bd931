"""The EquipmentActor's contract: callers (ingestion, alerting) import this, never the implementation."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any

from dapr.actor import ActorInterface, actormethod


class EquipmentActorInterface(ActorInterface):
    @abstractmethod
    @actormethod(name="Ingest")
    async def ingest(self, readings: list[dict[str, Any]]) -> dict[str, Any]:
        """Apply a batch of one machine's readings (Reading JSON); returns EquipmentIngestResult JSON."""

    @abstractmethod
    @actormethod(name="GetHealth")
    async def get_health(self) -> dict[str, Any]:
        """The machine's HealthSnapshot JSON."""

    @abstractmethod
    @actormethod(name="GetHistory")
    async def get_history(self, n: int) -> list[dict[str, Any]]:
        """The last n predictions: [{seq, at, predicted_rul, model_version}]."""
