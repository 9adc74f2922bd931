"""The sidecar's channel to its own app: plain HTTP on the app port, as daprd's HTTP app channel."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
from multidict import CIMultiDict


@dataclass(slots=True)
class AppResponse:
    status: int
    headers: CIMultiDict[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class AppChannel:
    def __init__(self, app_id: str, host: str, port: int, api_token: str | None = None) -> None:
        self.app_id = app_id
        self.host = host
        self.port = port
        self.api_token = api_token
        self._session: aiohttp.ClientSession | None = None
        self.ready = False

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256, force_close=False),
                auto_decompress=False,
            )
        return self._session

    async def port_open(self) -> bool:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 1.0)
        except (OSError, TimeoutError):
            return False
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass
        return True

    async def wait_ready(self, timeout: float, stop: asyncio.Event | None = None) -> bool:
        """Wait until the app listens on its port (daprd waits the same way before init calls)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if stop is not None and stop.is_set():
                return False
            if await self.port_open():
                self.ready = True
                return True
            await asyncio.sleep(0.05)
        return False

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

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
