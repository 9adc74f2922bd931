"""What the dashboard reads and does, as one small interface (`DashboardBackend`) with a Dapr
implementation: service invocation of alerting, training and inference, and EquipmentActor calls.
Tests put an in-memory fake in its place.
"""

from __future__ import annotations

import json
from typing import Protocol

from dapr.actor import ActorId
from dapr.clients.exceptions import DaprHttpError
from pydantic import TypeAdapter

from apps.common.actor_interface import EquipmentActorInterface
from apps.common.contracts import HealthSnapshot, ModelCard
from apps.common.daprhttp import PooledActorProxyFactory, close_pooled, pooled_invocation_client
from apps.common.names import (
    ALERTING_APP_ID,
    EQUIPMENT_ACTOR_TYPE,
    GATEWAY_APP_ID,
    INFERENCE_APP_ID,
    TRAINING_APP_ID,
)
from apps.dashboard.domain import (
    AlertInfo,
    HistoryPoint,
    LifecycleState,
    NotificationStatus,
    RegisteredModelInfo,
)
from apps.dashboard.signin import Session


class BackendUnavailable(Exception):
    """A service behind the dashboard did not answer (down, restarting, its store failing)."""


class AlertNotFound(Exception):
    pass


class ActionRefused(Exception):
    """Alerting refused an operator's action (the alert is already cleared or resolved; the machine's
    actor did not answer); the reason is alerting's own."""


class DashboardBackend(Protocol):
    async def fleet(self) -> list[HealthSnapshot]:
        """The latest HealthSnapshot of every machine (alerting's fleet view)."""
        ...

    async def alerts(
        self, *, state: LifecycleState | None = None, equipment_id: str | None = None, limit: int = 1000
    ) -> list[AlertInfo]:
        """Alerts, newest raised first."""
        ...

    async def alert(self, alert_id: str) -> AlertInfo:
        """One alert; AlertNotFound if alerting does not know it."""
        ...

    async def acknowledge(self, alert_id: str, by: str, note: str) -> AlertInfo:
        """AlertNotFound, or ActionRefused with alerting's reason."""
        ...

    async def resolve(self, alert_id: str, by: str, note: str) -> AlertInfo:
        """Close an alert the machine has not cleared: AlertNotFound, or ActionRefused."""
        ...

    async def retire(self, equipment_id: str, by: str, note: str) -> list[str]:
        """Stop watching a machine; the ids of the alerts that resolved. AlertNotFound, ActionRefused."""
        ...

    async def notifications(self) -> NotificationStatus:
        """Whether alert notifications get through (alerting's sender)."""
        ...

    async def health(self, equipment_id: str) -> HealthSnapshot | None:
        """The machine's health from its actor; None for a machine that never sent a reading."""
        ...

    async def history(self, equipment_id: str, n: int) -> list[HistoryPoint]:
        """The machine's last n predictions, oldest first, from its actor."""
        ...

    async def registered_models(self) -> list[RegisteredModelInfo]:
        """The model registry: every version's model card and the champion, per model."""
        ...

    async def serving(self) -> dict[str, int]:
        """Model name -> the version inference has loaded and serves."""
        ...

    async def served_card(self, name: str) -> ModelCard | None:
        """The model card of the version inference serves for `name`; None when it serves none."""
        ...

    async def whoami(self, key: str) -> Session | None:
        """The gateway's view of an API key (name, scopes), None if it is not valid."""
        ...

    async def close(self) -> None: ...


_ALERTS = TypeAdapter(list[AlertInfo])
_MODELS = TypeAdapter(list[RegisteredModelInfo])
_HISTORY = TypeAdapter(list[HistoryPoint])


def _detail(exc: DaprHttpError) -> str:
    """The callee's `detail` (FastAPI's error body) or the error text."""
    raw = exc.raw_response_bytes or b""
    try:
        body = json.loads(raw)
    except ValueError:
        return str(exc)
    return str(body.get("detail") or exc) if isinstance(body, dict) else str(exc)


class DaprDashboardBackend:
    """DashboardBackend over Dapr: HTTP service invocation (so a callee's 404/409 keeps its status)
    and ActorProxy calls on EquipmentActor; every call goes through this app's sidecar."""

    def __init__(self, timeout_seconds: int = 30) -> None:
        self.invoker = pooled_invocation_client(timeout_seconds)
        self.actors = PooledActorProxyFactory()

    async def close(self) -> None:
        await close_pooled(self.invoker)
        await self.actors.close()

    async def _call(
        self,
        app_id: str,
        method: str,
        *,
        verb: str = "GET",
        query: list[tuple[str, str]] | None = None,
        body: str = "",
    ) -> bytes:
        try:
            resp = await self.invoker.invoke_method_async(
                app_id,
                method,
                body,
                content_type="application/json" if body else None,
                http_verb=verb,
                http_querystring=tuple(query or ()),
            )
        except DaprHttpError as exc:
            if exc.status_code in (404, 409):
                raise
            raise BackendUnavailable(f"{app_id} {method}: {_detail(exc)}") from exc
        except Exception as exc:  # connection refused, timeout: the sidecar or the app is away
            raise BackendUnavailable(f"{app_id} {method}: {exc or type(exc).__name__}") from exc
        return bytes(resp.data)

    async def fleet(self) -> list[HealthSnapshot]:
        raw = json.loads(await self._call(ALERTING_APP_ID, "v1/fleet"))
        return [HealthSnapshot.model_validate(m) for m in raw.get("machines", [])]

    async def alerts(
        self, *, state: LifecycleState | None = None, equipment_id: str | None = None, limit: int = 1000
    ) -> list[AlertInfo]:
        query = [("limit", str(limit))]
        if state is not None:
            query.append(("state", state))
        if equipment_id is not None:
            query.append(("equipment_id", equipment_id))
        return _ALERTS.validate_json(await self._call(ALERTING_APP_ID, "v1/alerts", query=query))

    async def alert(self, alert_id: str) -> AlertInfo:
        try:
            raw = await self._call(ALERTING_APP_ID, f"v1/alerts/{alert_id}")
        except DaprHttpError as exc:
            raise AlertNotFound(_detail(exc)) from exc
        return AlertInfo.model_validate_json(raw)

    async def acknowledge(self, alert_id: str, by: str, note: str) -> AlertInfo:
        return AlertInfo.model_validate_json(await self._act(f"v1/alerts/{alert_id}/ack", "POST", by, note))

    async def resolve(self, alert_id: str, by: str, note: str) -> AlertInfo:
        return AlertInfo.model_validate_json(
            await self._act(f"v1/alerts/{alert_id}/resolve", "POST", by, note)
        )

    async def retire(self, equipment_id: str, by: str, note: str) -> list[str]:
        retired = json.loads(await self._act(f"v1/fleet/{equipment_id}", "DELETE", by, note))
        return [str(i) for i in retired.get("resolved_alerts", [])]

    async def notifications(self) -> NotificationStatus:
        return NotificationStatus.model_validate_json(await self._call(ALERTING_APP_ID, "v1/notifications"))

    async def _act(self, method: str, verb: str, by: str, note: str) -> bytes:
        """An operator's action on alerting: 404 -> AlertNotFound, 409 -> ActionRefused (alerting's
        reason); a 503 (the machine's actor or the store did not answer) is BackendUnavailable."""
        try:
            return await self._call(
                ALERTING_APP_ID, method, verb=verb, body=json.dumps({"by": by, "note": note})
            )
        except DaprHttpError as exc:
            if exc.status_code == 404:
                raise AlertNotFound(_detail(exc)) from exc
            raise ActionRefused(_detail(exc)) from exc

    async def whoami(self, key: str) -> Session | None:
        """The session a gateway API key opens (the gateway checks it), None if it is not valid."""
        try:
            resp = await self.invoker.invoke_method_async(
                GATEWAY_APP_ID, "api/v1/whoami", "", metadata=(("x-api-key", key),), http_verb="GET"
            )
        except DaprHttpError as exc:
            if exc.status_code in (401, 403):
                return None
            raise BackendUnavailable(f"{GATEWAY_APP_ID} whoami: {_detail(exc)}") from exc
        except Exception as exc:
            raise BackendUnavailable(f"{GATEWAY_APP_ID} whoami: {exc or type(exc).__name__}") from exc
        me = json.loads(resp.data)
        return Session(key_id=str(me["key_id"]), name=str(me["name"]), scopes=list(me["scopes"]), expires=0)

    async def health(self, equipment_id: str) -> HealthSnapshot | None:
        proxy = self.actors.create(EQUIPMENT_ACTOR_TYPE, ActorId(equipment_id), EquipmentActorInterface)
        try:
            answer = await proxy.GetHealth()
        except DaprHttpError as exc:
            if "has sent no readings" in str(exc):  # the actor's answer for a machine it never saw
                return None
            raise BackendUnavailable(f"{EQUIPMENT_ACTOR_TYPE}/{equipment_id} GetHealth: {exc}") from exc
        except Exception as exc:
            raise BackendUnavailable(f"{EQUIPMENT_ACTOR_TYPE}/{equipment_id} GetHealth: {exc}") from exc
        return HealthSnapshot.model_validate_json(answer)

    async def history(self, equipment_id: str, n: int) -> list[HistoryPoint]:
        proxy = self.actors.create(EQUIPMENT_ACTOR_TYPE, ActorId(equipment_id), EquipmentActorInterface)
        try:
            answer = await proxy.GetHistory(n)
        except Exception as exc:
            raise BackendUnavailable(f"{EQUIPMENT_ACTOR_TYPE}/{equipment_id} GetHistory: {exc}") from exc
        return _HISTORY.validate_json(answer)

    async def registered_models(self) -> list[RegisteredModelInfo]:
        return _MODELS.validate_json(await self._call(TRAINING_APP_ID, "v1/models"))

    async def serving(self) -> dict[str, int]:
        loaded = json.loads(await self._call(INFERENCE_APP_ID, "v1/models"))
        return {str(k): int(v) for k, v in loaded.items()}

    async def served_card(self, name: str) -> ModelCard | None:
        try:
            raw = await self._call(INFERENCE_APP_ID, f"v1/models/{name}")
        except DaprHttpError as exc:  # 404: inference serves no model of that name
            if exc.status_code == 404:
                return None
            raise BackendUnavailable(f"{INFERENCE_APP_ID} v1/models/{name}: {_detail(exc)}") from exc
        return ModelCard.model_validate_json(raw)
