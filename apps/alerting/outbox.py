"""The notification outbox as the sender sees it: what is pending, claiming one, finishing one.

Alert writes put notifications in (store.py, in the alert's own transaction); the sender takes them
out once delivered. Key layout in store.py. A notification is claimed with its etag before it is sent,
so two replicas never send one at the same time; finishing it deletes it, removes it from its
shard's pending list and writes the delivery status that counts it, in one transaction (etag-guarded
against an alert write adding to that list): a crash never leaves a delivery gone but uncounted.
"""

from __future__ import annotations

from typing import Protocol

from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from pydantic import TypeAdapter

from apps.alerting.notifications import DeliveryStatus, Notification
from apps.alerting.store import (
    INDEX_SHARDS,
    STATUS_KEY,
    Conflict,
    DaprState,
    StateError,
    Versioned,
    is_conflict,
    notification_key,
    pending_key,
    shard_of,
)

_IDS = TypeAdapter(list[str])


class OutboxRepository(Protocol):
    async def pending(self) -> list[Versioned[Notification]]:
        """Every pending notification of every shard, with its etag."""

    async def claim(self, read: Versioned[Notification], claimed: Notification) -> None:
        """Replace `read` by `claimed` if nobody changed it since (else Conflict)."""

    async def save(self, notification: Notification) -> None:
        """Write a notification this sender holds (its claim keeps the others off it)."""

    async def finish(self, notification: Notification, status: DeliveryStatus) -> None:
        """Delete it, take it off its shard's pending list and save `status` (which counts it),
        atomically (Conflict: read again)."""

    async def status(self) -> DeliveryStatus: ...
    async def save_status(self, status: DeliveryStatus) -> None: ...


class DaprOutbox(DaprState):
    """OutboxRepository on the Dapr state API."""

    async def pending(self) -> list[Versioned[Notification]]:
        lists = await self._bulk([pending_key(s) for s in range(INDEX_SHARDS)])
        ids = [i for raw in lists.values() for i in _IDS.validate_json(raw)]
        found = await self._bulk_versioned([notification_key(i) for i in ids])
        return [Versioned(Notification.model_validate_json(data), etag) for data, etag in found.values()]

    async def claim(self, read: Versioned[Notification], claimed: Notification) -> None:
        try:
            await self.client.save_state(
                self.store, notification_key(claimed.id), claimed.model_dump_json(), etag=read.etag
            )
        except StateError as exc:
            if is_conflict(exc):
                raise Conflict(str(exc)) from exc
            raise

    async def save(self, notification: Notification) -> None:
        await self.client.save_state(
            self.store, notification_key(notification.id), notification.model_dump_json()
        )

    async def finish(self, notification: Notification, status: DeliveryStatus) -> None:
        key = pending_key(shard_of(notification.equipment_id))
        raw, etag = await self._ensure(key, "[]")
        ids = [i for i in _IDS.validate_json(raw) if i != notification.id]
        await self._transact(
            [
                TransactionalStateOperation(
                    key=notification_key(notification.id), operation_type=TransactionOperationType.delete
                ),
                TransactionalStateOperation(key=key, data=_IDS.dump_json(ids).decode(), etag=etag),
                TransactionalStateOperation(key=STATUS_KEY, data=status.model_dump_json()),
            ]
        )

    async def status(self) -> DeliveryStatus:
        data, _ = await self._read(STATUS_KEY)
        return DeliveryStatus() if data is None else DeliveryStatus.model_validate_json(data)

    async def save_status(self, status: DeliveryStatus) -> None:
        await self.client.save_state(self.store, STATUS_KEY, status.model_dump_json())
