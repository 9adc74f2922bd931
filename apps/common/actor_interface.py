"""The EquipmentActor's contract: callers (ingestion, alerting, dashboard) import this, never the
implementation.

Arguments and results cross the actor boundary as JSON *strings*. The SDK's actor serializer turns
any string that looks like a date ("2024-01-01...") into a datetime and any that looks like a
duration ("30s") into a timedelta; a machine called "2024-01-01-press" would change type in flight.
A JSON document as one string starts with "[" or "{" and is left alone.
"""

from __future__ import annotations

from abc import abstractmethod

from dapr.actor import ActorInterface, actormethod


class EquipmentActorInterface(ActorInterface):
    @abstractmethod
    @actormethod(name="Ingest")
    async def ingest(self, readings_json: str) -> str:
        """Apply one machine's readings (a JSON list of Reading); returns EquipmentIngestResult JSON."""

    @abstractmethod
    @actormethod(name="GetHealth")
    async def get_health(self) -> str:
        """The machine's HealthSnapshot JSON."""

    @abstractmethod
    @actormethod(name="GetHistory")
    async def get_history(self, n: int) -> str:
        """The last n predictions as JSON: [{seq, at, predicted_rul, model_version}]."""

    @abstractmethod
    @actormethod(name="ResolveAlert")
    async def resolve_alert(self, request_json: str) -> str:
        """End an alert episode an operator resolved: `{"kind", "episode"}` -> `{"ended": bool}`
        (false when that episode is not the machine's latest of its kind)."""

    @abstractmethod
    @actormethod(name="Retire")
    async def retire(self) -> str:
        """Stop watching the machine (its episodes end, its silence reminder goes; a reading brings it
        back): -> `{"known": bool, "retired_at": epoch seconds}`."""

    @abstractmethod
    @actormethod(name="StartLife")
    async def start_life(self, event_json: str) -> str:
        """A failure, maintenance or replacement event (`{"kind", "seq", "note"}`) starts the machine's
        next life (apps/equipment/domain.py `start_life`): -> `{"known": bool, "applied": bool, "life":
        int | null}`; `applied` false when that life had already started (the same event again)."""
