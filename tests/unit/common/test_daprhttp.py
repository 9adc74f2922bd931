"""The pooled Dapr SDK HTTP clients: the same requests as the SDK's, over one kept-alive connection.

A small aiohttp server plays the sidecar and records which client port each request came from, so a
new connection per call (what SDK 1.19 does by itself) shows as many ports.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from dapr.actor import ActorId, ActorInterface, ActorProxy, actormethod
from dapr.clients.exceptions import DaprHttpError
from dapr.clients.http.dapr_actor_http_client import DaprActorHttpClient
from dapr.serializers import DefaultJSONSerializer

from apps.common.daprhttp import PooledActorProxyFactory, PooledDaprActorHttpClient, PooledDaprHttpClient


class CounterInterface(ActorInterface):
    @actormethod(name="Add")
    async def add(self, n: int) -> int: ...


class FakeSidecar:
    def __init__(self) -> None:
        self.client_ports: list[int] = []
        self.requests: list[tuple[str, str, bytes, str]] = []
        self.tokens: list[str | None] = []

    async def handle(self, request: web.Request) -> web.Response:
        if request.path.startswith("/v1.0/healthz"):
            return web.Response(status=204)  # the SDK's start-up check, by urllib on its own connection
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.client_ports.append(int(peer[1]) if peer else -1)
        body = await request.read()
        self.requests.append((request.method, request.path, body, request.headers.get("User-Agent", "")))
        self.tokens.append(request.headers.get("dapr-api-token"))
        if request.path.endswith("/fail"):
            return web.json_response({"errorCode": "ERR_TEST", "message": "it failed"}, status=500)
        return web.Response(body=body or b"{}", content_type="application/json")


@pytest.fixture
def sidecar(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FakeSidecar, str]]:
    """The fake sidecar on its own loop and thread: the SDK's health check is blocking urllib."""
    fake = FakeSidecar()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    asyncio.run_coroutine_threadsafe(server.start_server(), loop).result(10)
    monkeypatch.setenv("DAPR_HTTP_PORT", str(server.port))  # read live by SDK 1.19
    yield fake, f"http://127.0.0.1:{server.port}"
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


async def test_calls_share_one_connection_and_keep_the_sdk_request_shape(
    sidecar: tuple[FakeSidecar, str],
) -> None:
    fake, base = sidecar
    client = PooledDaprHttpClient(DefaultJSONSerializer(), timeout=10)
    for i in range(5):
        body, response = await client.send_bytes("PUT", f"{base}/v1.0/x/{i}", f'{{"i": {i}}}'.encode())
        assert response.status == 200 and body == f'{{"i": {i}}}'.encode()
    assert len(set(fake.client_ports)) == 1, f"{len(set(fake.client_ports))} connections for 5 calls"
    assert all(ua.startswith("dapr-sdk-python/") for *_, ua in fake.requests)
    with pytest.raises(DaprHttpError, match="it failed"):
        await client.send_bytes("POST", f"{base}/v1.0/fail", b"")
    await client.close()


async def test_actor_proxies_from_the_pooled_factory_reuse_the_connection(
    sidecar: tuple[FakeSidecar, str],
) -> None:
    fake, _ = sidecar
    factory = PooledActorProxyFactory()
    for i in range(4):
        proxy = ActorProxy.create("Counter", ActorId(f"c{i}"), CounterInterface, factory)
        assert await proxy.Add(i) == i
    assert [(m, p) for m, p, *_ in fake.requests] == [
        ("POST", f"/v1.0/actors/Counter/c{i}/method/Add") for i in range(4)
    ]
    assert len(set(fake.client_ports)) == 1
    await factory.close()


@pytest.mark.parametrize("by_endpoint", [False, True])
async def test_actor_urls_are_the_sdks_with_settings_read_once(
    sidecar: tuple[FakeSidecar, str], monkeypatch: pytest.MonkeyPatch, by_endpoint: bool
) -> None:
    fake, base = sidecar
    if by_endpoint:  # DAPR_HTTP_ENDPOINT wins over host and port, as in the SDK's get_api_url()
        monkeypatch.setenv("DAPR_HTTP_ENDPOINT", base)
        monkeypatch.setenv("DAPR_HTTP_PORT", "1")
    monkeypatch.setenv("DAPR_API_TOKEN", "sidecar-token")
    client = PooledDaprActorHttpClient()
    assert client._get_base_url("Counter", "c 1") == DaprActorHttpClient._get_base_url(
        client, "Counter", "c 1"
    )
    await client.save_state_transactionally("Counter", "c1", b"[]")
    assert [(m, p) for m, p, *_ in fake.requests] == [("PUT", "/v1.0/actors/Counter/c1/state")]
    assert fake.tokens == ["sidecar-token"]
    await client.close()
