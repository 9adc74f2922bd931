"""The Dapr SDK's HTTP clients, with their calls on one keep-alive connection pool per app.

SDK 1.19's `DaprHttpClient.send_bytes` opens a new `aiohttp.ClientSession` (so a new TCP connection
to the sidecar, and a new accept on the sidecar's side) for every call. The actor proxy (ingestion ->
EquipmentActor), the actor runtime's state and reminder calls, and HTTP service invocation
(equipment -> inference) all go through it, so on the pipeline's hot path that setup cost more CPU
than the calls themselves. These subclasses send the very same requests (URL, headers, body,
timeout, retry policy, error conversion: `send_bytes` below mirrors the SDK's) through a session
kept for the app's lifetime. They are plugged in where the SDK takes a client (`register_actor`'s
`actor_client`) or keeps one per object (`ActorProxyFactory`, `DaprClient.invocation_client`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
from dapr.actor import ActorProxyFactory
from dapr.aio.clients import DaprClient
from dapr.clients._constants import DEFAULT_JSON_CONTENT_TYPE
from dapr.clients.http.client import DaprHttpClient
from dapr.clients.http.conf import (
    CONTENT_TYPE_HEADER,
    DAPR_API_TOKEN_HEADER,
    DAPR_USER_AGENT,
    USER_AGENT_HEADER,
)
from dapr.clients.http.dapr_actor_http_client import DaprActorHttpClient
from dapr.clients.http.dapr_invocation_http_client import DaprInvocationHttpClient
from dapr.clients.http.helpers import get_api_url
from dapr.clients.retry import RetryPolicy
from dapr.conf import settings
from dapr.serializers import DefaultJSONSerializer, Serializer

from apps.common.metrics import record_actor_call
from apps.common.tracecontext import trace_headers


def _sdk_timeout() -> int:
    return int(settings.DAPR_HTTP_TIMEOUT_SECONDS)


class PooledDaprHttpClient(DaprHttpClient):
    """`DaprHttpClient` reusing one aiohttp session (and its keep-alive connections) per event loop."""

    def __init__(
        self,
        message_serializer: Serializer,
        timeout: int | None = 60,
        headers_callback: Callable[[], dict[str, str]] | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        super().__init__(message_serializer, timeout, headers_callback, retry_policy)
        # Read once: the SDK's settings read os.environ on every access, and the environment does not
        # change once the app has started.
        self._api_token: str | None = settings.DAPR_API_TOKEN
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    def _pooled_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session = aiohttp.ClientSession()
            self._session_loop = loop
        return self._session

    async def send_bytes(  # type: ignore[override]
        self,
        method: str,
        url: str,
        data: bytes | None,
        headers: dict[str, bytes | str] | None = None,
        query_params: Mapping[str, Any] | None = None,
        timeout: int | None = None,
    ) -> tuple[bytes, aiohttp.ClientResponse]:
        headers_map = dict(headers or {})
        if not headers_map.get(CONTENT_TYPE_HEADER):
            headers_map[CONTENT_TYPE_HEADER] = DEFAULT_JSON_CONTENT_TYPE
        if self._api_token is not None:
            headers_map[DAPR_API_TOKEN_HEADER] = self._api_token
        if self._headers_callback is not None:
            headers_map.update(self._headers_callback())
        headers_map.update(trace_headers())  # the request being served's trace goes on with the call
        headers_map[USER_AGENT_HEADER] = DAPR_USER_AGENT
        req = {
            "method": method,
            "url": url,
            "data": data,
            "headers": headers_map,
            "sslcontext": self.get_ssl_context(),
            "params": query_params,
            "timeout": aiohttp.ClientTimeout(total=timeout) if timeout else self._timeout,
        }
        r = await self.retry_policy.make_http_call(self._pooled_session(), req)
        try:
            if 200 <= r.status < 300:
                return await r.read(), r
            raise await self.convert_to_error(r)
        finally:
            r.release()  # body read: the connection goes back to the pool

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None


class PooledDaprActorHttpClient(DaprActorHttpClient):
    """The SDK's actor HTTP client (invoke, state, reminders, timers) over a `PooledDaprHttpClient`."""

    def __init__(
        self,
        message_serializer: Serializer | None = None,
        timeout: int | None = None,
        headers_callback: Callable[[], dict[str, str]] | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        # Not super().__init__: it would build (and health-wait for) a second, unpooled client.
        self._client = PooledDaprHttpClient(
            message_serializer or DefaultJSONSerializer(),
            _sdk_timeout() if timeout is None else timeout,
            headers_callback,
            retry_policy,
        )
        # The SDK's get_api_url() (DAPR_HTTP_ENDPOINT, else DAPR_RUNTIME_HOST and DAPR_HTTP_PORT) reads
        # four settings, each from os.environ, on every actor call and state save: taken once here.
        self._actors_url = f"{get_api_url()}/actors"

    def _get_base_url(self, actor_type: str, actor_id: str) -> str:
        return f"{self._actors_url}/{actor_type}/{actor_id}"

    async def invoke_method(
        self, actor_type: str, actor_id: str, method: str, data: bytes | None = None
    ) -> bytes:
        """The SDK's call, counted and timed (every app's actor calls go through here)."""
        started, ok = time.perf_counter(), False
        try:
            answer = await super().invoke_method(actor_type, actor_id, method, data)
            ok = True
            return answer
        finally:
            record_actor_call(actor_type, method, ok, started)

    async def close(self) -> None:
        await self._client.close()  # type: ignore[attr-defined]


class PooledActorProxyFactory(ActorProxyFactory):
    """`ActorProxyFactory` whose proxies call the sidecar over one pooled session."""

    def __init__(self, message_serializer: Serializer | None = None) -> None:
        serializer = message_serializer or DefaultJSONSerializer()
        super().__init__(serializer)
        self._dapr_client = PooledDaprActorHttpClient(serializer)

    async def close(self) -> None:
        await self._dapr_client.close()  # type: ignore[attr-defined]


def pool_invocation(client: DaprClient) -> DaprClient:
    """Make `client.invoke_method` (HTTP service invocation) reuse its connections; returns `client`."""
    current = client.invocation_client
    if isinstance(current, DaprInvocationHttpClient):
        old = current._client
        current._client = PooledDaprHttpClient(
            DefaultJSONSerializer(),
            int(old._timeout.total) if old._timeout.total else None,
            old._headers_callback,
            old.retry_policy,
        )
    return client


async def close_invocation(client: DaprClient) -> None:
    current = client.invocation_client
    inner = getattr(current, "_client", None)
    if isinstance(inner, PooledDaprHttpClient):
        await inner.close()


def pooled_invocation_client(timeout: int | None = None) -> DaprInvocationHttpClient:
    """The SDK's HTTP service-invocation client on one pooled session. Over HTTP a callee's 4xx
    arrives as `DaprHttpError` with its `status_code` (gRPC invocation folds them into one code)."""
    seconds = _sdk_timeout() if timeout is None else timeout
    client = DaprInvocationHttpClient(timeout=seconds)
    client._client = PooledDaprHttpClient(DefaultJSONSerializer(), seconds)
    return client


async def close_pooled(client: DaprInvocationHttpClient) -> None:
    inner = getattr(client, "_client", None)
    if isinstance(inner, PooledDaprHttpClient):
        await inner.close()
