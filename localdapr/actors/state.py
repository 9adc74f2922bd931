"""Actor state: the actor's keys in the one state store marked `actorStateStore: "true"`.

Keys are `{appId}||{actorType}||{actorId}||{key}`, written raw (no keyPrefix) as daprd writes them,
so daprd pointed at the same store reads them.
"""

from __future__ import annotations

from typing import Any

import orjson

from localdapr.actors.errors import actor_error, instance_missing, runtime_not_found
from localdapr.actors.routing import Router
from localdapr.context import SidecarContext
from localdapr.errors import malformed
from localdapr.state.base import StateItem, StateStore, StateStoreError, TransactionOp


def actor_store(ctx: SidecarContext) -> StateStore:
    loaded = ctx.runtime.actor_store
    if loaded is None:
        raise runtime_not_found()
    return loaded.store


class ActorState:
    def __init__(self, ctx: SidecarContext, router: Router) -> None:
        self.ctx = ctx
        self.router = router

    def _key(self, actor_type: str, actor_id: str, key: str) -> str:
        return f"{self.ctx.app_id}||{actor_type}||{actor_id}||{key}"

    async def get(self, actor_type: str, actor_id: str, key: str) -> bytes | None:
        store = actor_store(self.ctx)
        if not self.router.hosts_here(actor_type, actor_id):
            raise instance_missing()
        try:
            found = await store.get(self._key(actor_type, actor_id, key))
        except StateStoreError as exc:
            raise actor_error("ERR_ACTOR_STATE_GET", f"error getting actor state: {exc}") from exc
        return found.data if found is not None else None

    async def transact(self, actor_type: str, actor_id: str, operations: Any) -> None:
        store = actor_store(self.ctx)
        if not isinstance(operations, list):
            raise malformed("actor state transaction must be a JSON array of operations")
        if not self.router.hosts_here(actor_type, actor_id):
            raise instance_missing()
        ttl_allowed = bool(self.ctx.configuration.features.get("ActorStateTTL"))
        ops: list[TransactionOp] = []
        for i, raw in enumerate(operations):
            if not isinstance(raw, dict):
                raise malformed(f"operation {i} is not an object")
            kind = raw.get("operation")
            req = raw.get("request") or {}
            key = req.get("key")
            if kind not in ("upsert", "delete") or not key:
                raise malformed(f"operation {i}: operation must be upsert or delete, with request.key")
            metadata = {str(k): str(v) for k, v in (req.get("metadata") or {}).items()}
            if "ttlInSeconds" in metadata and not ttl_allowed:
                raise actor_error(
                    "ERR_ACTOR_STATE_TRANSACTION_SAVE",
                    "error saving actor transaction state: ttlInSeconds is not supported without the "
                    '"ActorStateTTL" feature enabled',
                )
            # orjson: the value (a whole actor's state) is re-encoded on every save, the hot path.
            value = orjson.dumps(req.get("value")) if kind == "upsert" else b""
            item = StateItem(key=self._key(actor_type, actor_id, str(key)), value=value, metadata=metadata)
            ops.append(TransactionOp(operation=kind, item=item))
        try:
            await store.transact(ops)
        except StateStoreError as exc:
            raise actor_error(
                "ERR_ACTOR_STATE_TRANSACTION_SAVE", f"error saving actor transaction state: {exc}"
            ) from exc
