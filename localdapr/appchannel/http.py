"""The HTTP app channel: plain HTTP on the app port, as daprd's HTTP app channel."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import aiohttp
import grpc
from multidict import CIMultiDict

from localdapr.appchannel.base import DEFAULT_CONTENT_TYPE, AppResponse, MethodCall, wait_for_port
from localdapr.errors import DaprError

# Seconds an idle keep-alive connection to the app is kept: below uvicorn's default of 5.
APP_KEEPALIVE = 3.0


class HttpAppChannel:
    protocol: ClassVar[str] = "http"
    hosts_actors: ClassVar[bool] = True

    def __init__(
        self,
        app_id: str,
        host: str,
        port: int,
        api_token: str | None = None,
        health_check_path: str = "/healthz",
    ) -> None:
        self.app_id = app_id
        self.host = host
        self.port = port
        self.api_token = api_token
        self.health_check_path = health_check_path
        self._session: aiohttp.ClientSession | None = None
        self.ready = False

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # An idle connection is dropped here before the app drops it (uvicorn closes them
                # after 5 s): reusing one the app has just closed is a "connection reset" and a retry.
                connector=aiohttp.TCPConnector(limit=256, force_close=False, keepalive_timeout=APP_KEEPALIVE),
                auto_decompress=False,
            )
        return self._session

    async def wait_ready(self, timeout: float, stop: asyncio.Event | None = None) -> bool:
        self.ready = await wait_for_port(self.host, self.port, timeout, stop)
        return self.ready

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: dict[str, str] | CIMultiDict[str] | None = None,
        query: str = "",
        timeout: float | None = 60.0,
    ) -> AppResponse:
        url = f"{self.base_url}/{path.lstrip('/')}"
        if query:
            url = f"{url}?{query}"
        out_headers = CIMultiDict(headers or {})
        if self.api_token:
            out_headers["dapr-api-token"] = self.api_token
        async with self.session().request(
            method,
            url,
            data=body,
            headers=out_headers,
            timeout=aiohttp.ClientTimeout(total=timeout),
            allow_redirects=False,
        ) as resp:
            data = await resp.read()
            return AppResponse(resp.status, CIMultiDict(resp.headers), data)

    async def invoke(self, call: MethodCall, timeout: float | None) -> AppResponse:
        if not call.verb:
            # daprd's HTTP channel refuses a call without the HTTP extension (a gRPC caller's choice).
            raise DaprError(
                "ERR_DIRECT_INVOKE", "missing HTTP extension field", 400, grpc.StatusCode.INVALID_ARGUMENT
            )
        headers = CIMultiDict(call.headers)
        headers["content-type"] = call.content_type or DEFAULT_CONTENT_TYPE
        return await self.request(
            call.verb, call.method, body=call.data, headers=headers, query=call.query, timeout=timeout
        )

    async def probe(self, timeout: float) -> bool:
        """GET the health check path: any 2xx is healthy, as daprd's HTTP health probe."""
        try:
            resp = await self.request("GET", self.health_check_path, timeout=timeout)
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False
        return 200 <= resp.status < 300

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
