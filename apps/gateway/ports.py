"""Everything the gateway reaches through its sidecar, as small interfaces with Dapr implementations:
the services (HTTP service invocation), the EquipmentActor (health, history) and the key store (state).
Tests put in-memory fakes in their place.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import grpc
from dapr.actor import ActorId
from dapr.aio.clients import DaprClient
from dapr.clients.exceptions import ERROR_CODE_UNKNOWN, DaprHttpError, DaprInternalError
from dapr.clients.grpc._state import Concurrency, StateOptions

from apps.common.actor_interface import EquipmentActorInterface
from apps.common.contracts import HealthSnapshot
from apps.common.daprhttp import PooledActorProxyFactory, close_pooled, pooled_invocation_client
from apps.common.names import EQUIPMENT_ACTOR_TYPE, STATE_STORE
from apps.gateway.keys import Conflict, KeyRing, KeyStoreUnavailable, Versioned

KEY_RING_KEY = "apikeys"
# What a failed state call raises: most RPC errors come as DaprGrpcError (an RpcError), save_state's
# as DaprInternalError with the message only.
_STATE_ERRORS = (grpc.RpcError, DaprInternalError)


class UpstreamUnavailable(Exception):
    """The service (or its sidecar) did not answer: down, restarting, not found by name resolution."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A service's own answer, whatever its status."""

    status: int
    body: bytes
    content_type: str = "application/json"

    def json(self) -> Any:
        return json.loads(self.body)


class Upstream(Protocol):
    async def call(
        self,
        app_id: str,
        path: str,
        *,
        verb: str = "GET",
        query: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
    ) -> Answer:
        """The service's answer; UpstreamUnavailable when there is none."""
        ...

    async def health(self, equipment_id: str) -> HealthSnapshot | None:
        """The machine's health from its actor; None for a machine that never sent a reading."""
        ...

    async def history(self, equipment_id: str, n: int) -> list[dict[str, Any]]:
        """The machine's last n predictions, oldest first."""
        ...

    async def close(self) -> None: ...


class DaprUpstream:
    """Upstream over the gateway's sidecar: HTTP service invocation (a callee's 4xx keeps its status
    and body) and ActorProxy calls over one pooled connection."""

    def __init__(self, timeout_seconds: int) -> None:
        self.invoker = pooled_invocation_client(timeout_seconds)
        self.actors = PooledActorProxyFactory()

    async def close(self) -> None:
        await close_pooled(self.invoker)
        await self.actors.close()

    async def call(
        self,
        app_id: str,
        path: str,
        *,
        verb: str = "GET",
        query: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
    ) -> Answer:
        try:
            resp = await self.invoker.invoke_method_async(
                app_id,
                path,
                body,
                content_type="application/json" if body else None,
                metadata=tuple(headers),
                http_verb=verb,
                http_querystring=tuple(query),
            )
        except DaprHttpError as exc:
            if exc.error_code != ERROR_CODE_UNKNOWN:  # the sidecar's own error (ERR_DIRECT_INVOKE, ...)
                raise UpstreamUnavailable(f"{app_id}: {exc.message}") from exc
            return Answer(exc.status_code or 502, exc.raw_response_bytes or b"")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise UpstreamUnavailable(f"{app_id}: {exc or type(exc).__name__}") from exc
        return Answer(resp.status_code or 200, bytes(resp.data), resp.content_type or "application/json")

    async def health(self, equipment_id: str) -> HealthSnapshot | None:
        proxy = self.actors.create(EQUIPMENT_ACTOR_TYPE, ActorId(equipment_id), EquipmentActorInterface)
        try:
            answer = await proxy.GetHealth()
        except DaprHttpError as exc:
            if "has sent no readings" in str(exc):  # the actor's answer for a machine it never saw
                return None
            raise UpstreamUnavailable(f"{EQUIPMENT_ACTOR_TYPE}/{equipment_id}: {exc}") from exc
        except Exception as exc:
            raise UpstreamUnavailable(f"{EQUIPMENT_ACTOR_TYPE}/{equipment_id}: {exc}") from exc
        return HealthSnapshot.model_validate_json(answer)

    async def history(self, equipment_id: str, n: int) -> list[dict[str, Any]]:
        proxy = self.actors.create(EQUIPMENT_ACTOR_TYPE, ActorId(equipment_id), EquipmentActorInterface)
        try:
            answer = await proxy.GetHistory(n)
        except Exception as exc:
            raise UpstreamUnavailable(f"{EQUIPMENT_ACTOR_TYPE}/{equipment_id}: {exc}") from exc
        points = json.loads(answer)
        return points if isinstance(points, list) else []


def _is_conflict(exc: Exception) -> bool:
    # An etag mismatch is ABORTED on a save (daprd and localdapr); some stores only say so in the text.
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    details = exc.details() if callable(getattr(exc, "details", None)) else str(exc)
    return code == grpc.StatusCode.ABORTED or "etag" in str(details or "").lower()


class DaprKeyStore:
    """KeyStore on the Dapr state API: one document (`apikeys`, under the gateway's key prefix)."""

    def __init__(self, client: DaprClient, store: str = STATE_STORE) -> None:
        self.client = client
        self.store = store

    async def load(self) -> Versioned[KeyRing]:
        try:
            got = await self.client.get_state(self.store, KEY_RING_KEY)
        except _STATE_ERRORS as exc:
            raise KeyStoreUnavailable(str(exc)) from exc
        if not got.data:
            return Versioned(KeyRing(), None)
        return Versioned(KeyRing.model_validate_json(got.data), got.etag or None)

    async def save(self, ring: KeyRing, etag: str | None) -> None:
        try:
            await self.client.save_state(
                self.store,
                KEY_RING_KEY,
                ring.model_dump_json(),
                etag=etag,
                options=StateOptions(concurrency=Concurrency.first_write),
            )
        except _STATE_ERRORS as exc:
            if _is_conflict(exc):
                raise Conflict(str(exc)) from exc
            raise KeyStoreUnavailable(str(exc)) from exc
