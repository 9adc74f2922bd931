"""What alerting needs besides its state: the machines' actors (an operator's resolve and retire
reach them) and the notification channel (the `notifications` output binding). Small interfaces
with Dapr implementations; the unit tests put fakes in their place.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Protocol

from dapr.actor import ActorId
from dapr.aio.clients import DaprClient

from apps.alerting.errors import EquipmentUnavailable
from apps.alerting.notifications import Notification
from apps.common.actor_interface import EquipmentActorInterface
from apps.common.contracts import AlertKind
from apps.common.daprhttp import PooledActorProxyFactory
from apps.common.names import EQUIPMENT_ACTOR_TYPE, NOTIFICATIONS_BINDING


class Machines(Protocol):
    async def end_episode(self, equipment_id: str, kind: AlertKind, episode: int) -> bool:
        """Tell the machine's actor an operator resolved that episode; True if it ended it (False: it
        had already moved on). EquipmentUnavailable if the actor did not answer."""

    async def retire(self, equipment_id: str) -> datetime | None:
        """Tell the machine's actor to stop watching; when it did (its clock), None if it never saw
        the machine. EquipmentUnavailable if it did not answer."""


class DaprMachines:
    """Machines through EquipmentActor calls (ResolveAlert, Retire) over this app's sidecar."""

    def __init__(self) -> None:
        self.factory = PooledActorProxyFactory()

    async def close(self) -> None:
        await self.factory.close()

    def _proxy(self, equipment_id: str):  # type: ignore[no-untyped-def]
        return self.factory.create(EQUIPMENT_ACTOR_TYPE, ActorId(equipment_id), EquipmentActorInterface)

    async def end_episode(self, equipment_id: str, kind: AlertKind, episode: int) -> bool:
        request = json.dumps({"kind": kind, "episode": episode})
        try:
            answer = await self._proxy(equipment_id).ResolveAlert(request)
        except Exception as exc:  # the equipment app is down or restarting: nothing was changed
            raise EquipmentUnavailable(f"the actor of {equipment_id} did not answer: {exc}") from exc
        return bool(json.loads(answer)["ended"])

    async def retire(self, equipment_id: str) -> datetime | None:
        try:
            answer = json.loads(await self._proxy(equipment_id).Retire())
        except Exception as exc:
            raise EquipmentUnavailable(f"the actor of {equipment_id} did not answer: {exc}") from exc
        at = answer.get("retired_at")
        return None if at is None else datetime.fromtimestamp(float(at), tz=UTC)


class DeliveryFailed(Exception):
    """The channel did not take a notification; the message says why (the binding's error)."""


class NotificationChannel(Protocol):
    async def send(self, notification: Notification) -> None:
        """Deliver it once (DeliveryFailed if not): the sender retries."""


class BindingChannel:
    """The `notifications` output binding: bindings.http to a webhook in the shipped profiles (a POST
    of the JSON payload), any other binding type by swapping the component file. The notification id
    goes as the `Idempotency-Key` header (bindings.http sends metadata keys that start with a capital
    letter as headers), so the receiver can drop a repeat."""

    def __init__(self, client: DaprClient, binding: str = NOTIFICATIONS_BINDING) -> None:
        self.client = client
        self.binding = binding

    async def send(self, notification: Notification) -> None:
        try:
            await self.client.invoke_binding(
                self.binding,
                "create",
                json.dumps(notification.payload),
                binding_metadata={"Idempotency-Key": notification.id, "Content-Type": "application/json"},
            )
        except Exception as exc:  # the webhook refused or is unreachable, or the sidecar failed
            raise DeliveryFailed(_reason(exc)) from exc


def _reason(exc: Exception) -> str:
    details = exc.details() if callable(getattr(exc, "details", None)) else None  # a gRPC error's own text
    return str(details or exc or type(exc).__name__)[:500]
