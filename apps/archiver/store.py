"""The archiver's staging area in the Dapr state store (`statestore`, keys prefixed with the app id).

Key layout (private to the archiver, hence here and not in apps/common/names.py):

    staging/<shard>/ring      Ring: first and next slot, readings held, since (etag-guarded)
    staging/<shard>/slot/<n>  StagedMessage: one readings-accepted message, until flushed
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc
from dapr.aio.clients import DaprClient
from dapr.clients.exceptions import DaprInternalError
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.clients.grpc._state import Concurrency, StateOptions

from apps.archiver.service import Conflict, Ring, StagedMessage, Versioned
from apps.common.names import STATE_STORE

# Staged messages per bulk read (see slots).
SLOTS_PER_READ = 5

# What a failed state call raises: most RPC errors come as DaprGrpcError (an RpcError), save_state's
# as DaprInternalError with the message only.
StateError = (grpc.RpcError, DaprInternalError)


def ring_key(shard: int) -> str:
    return f"staging/{shard}/ring"


def slot_key(shard: int, number: int) -> str:
    return f"staging/{shard}/slot/{number}"


def _is_conflict(exc: Exception) -> bool:
    # An etag mismatch is ABORTED on a save; daprd wraps a failed transaction's etag error in a
    # generic code, hence the message check as well.
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
    return code == grpc.StatusCode.ABORTED or "etag" in str(details or "").lower()


class DaprStagingStore:
    """StagingStore on the Dapr state API through the official async SDK client."""

    def __init__(self, client: DaprClient, store: str = STATE_STORE) -> None:
        self.client = client
        self.store = store

    async def ring(self, shard: int) -> Versioned[Ring]:
        key = ring_key(shard)
        got = await self.client.get_state(self.store, key)
        if got.data and got.etag:
            return Versioned(Ring.model_validate_json(got.data), got.etag)
        # First use: create it, so that every later write has an etag to present.
        try:
            await self.client.save_state(
                self.store,
                key,
                Ring().model_dump_json(),
                options=StateOptions(concurrency=Concurrency.first_write),
            )
        except StateError as exc:
            if not _is_conflict(exc):
                raise  # else a concurrent creator won: read what it wrote
        got = await self.client.get_state(self.store, key)
        if not got.data or not got.etag:
            raise RuntimeError(f"state store {self.store!r} returned no etag for {key!r}")
        return Versioned(Ring.model_validate_json(got.data), got.etag)

    async def _transact(self, ops: list[TransactionalStateOperation]) -> None:
        try:
            await self.client.execute_state_transaction(self.store, ops)
        except StateError as exc:
            if _is_conflict(exc):
                raise Conflict(str(exc)) from exc
            raise

    async def stage(self, shard: int, read: Versioned[Ring], ring: Ring, message: StagedMessage) -> None:
        await self._transact(
            [
                TransactionalStateOperation(
                    key=slot_key(shard, read.value.next), data=message.model_dump_json()
                ),
                TransactionalStateOperation(key=ring_key(shard), data=ring.model_dump_json(), etag=read.etag),
            ]
        )

    async def slots(self, shard: int, numbers: Sequence[int]) -> list[StagedMessage]:
        keys = [slot_key(shard, n) for n in numbers]
        # A staged message holds up to 1,000 readings (~700 KB of JSON): a bulk read of 100 of them went
        # over the sidecar's 4 MB gRPC message limit and the flush failed until they were read in fives.
        chunks = [keys[i : i + SLOTS_PER_READ] for i in range(0, len(keys), SLOTS_PER_READ)]
        responses = await asyncio.gather(
            *(self.client.get_bulk_state(self.store, c, parallelism=8) for c in chunks)
        )
        found: dict[str, bytes] = {}
        for response in responses:
            for item in response.items:
                if item.error:
                    raise RuntimeError(f"reading {item.key!r} from {self.store!r} failed: {item.error}")
                if item.data:
                    found[item.key] = bytes(item.data)
        return [StagedMessage.model_validate_json(found[k]) for k in keys if k in found]

    async def release(self, shard: int, read: Versioned[Ring], ring: Ring, numbers: Sequence[int]) -> None:
        ops = [
            TransactionalStateOperation(
                key=slot_key(shard, n), operation_type=TransactionOperationType.delete
            )
            for n in numbers
        ]
        ops.append(
            TransactionalStateOperation(key=ring_key(shard), data=ring.model_dump_json(), etag=read.etag)
        )
        await self._transact(ops)
