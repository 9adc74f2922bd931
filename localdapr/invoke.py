"""Service invocation: find the target app among the running instances and forward the call to it.

daprd forwards to the callee's sidecar, which calls its app; localdapr calls the callee app's port
directly (one hop fewer) with the headers the callee's sidecar would add. Resiliency for the target
app (timeout, retries, circuit breaker) is applied here, on the caller's side, as daprd does.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field

import aiohttp
import grpc
from multidict import CIMultiDict

from localdapr.appchannel import AppResponse
from localdapr.errors import DaprError
from localdapr.nameresolution import AppInstance, NameRegistry
from localdapr.resiliency import Resiliency

# Headers that describe one hop and must not be forwarded.
HOP_HEADERS = {
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "dapr-api-token",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-authenticate",
}


def invoke_error(app_id: str, message: str) -> DaprError:
    return DaprError(
        "ERR_DIRECT_INVOKE", f"failed to invoke, id: {app_id}, err: {message}", 500, grpc.StatusCode.INTERNAL
    )


@dataclass
class Invoker:
    caller_app_id: str
    registry: NameRegistry
    resiliency: Resiliency
    _session: aiohttp.ClientSession | None = None
    _round_robin: dict[str, itertools.count[int]] = field(default_factory=dict)

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=512), auto_decompress=False
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def pick(self, app_id: str) -> AppInstance:
        instances = [i for i in self.registry.resolve(app_id) if i.app_port]
        if not instances:
            self.registry.invalidate()
            instances = [i for i in self.registry.resolve(app_id) if i.app_port]
        if not instances:
            raise invoke_error(app_id, f"couldn't find service: {app_id}")
        counter = self._round_robin.setdefault(app_id, itertools.count())
        return instances[next(counter) % len(instances)]

    async def invoke(
        self,
        app_id: str,
        method: str,
        verb: str,
        body: bytes,
        headers: CIMultiDict[str] | dict[str, str],
        query: str,
    ) -> AppResponse:
        policy = self.resiliency.for_app(app_id)
        if policy.breaker is not None and not policy.breaker.allow():
            raise invoke_error(app_id, "circuit breaker is open")
        out = CIMultiDict((k, v) for k, v in CIMultiDict(headers).items() if k.lower() not in HOP_HEADERS)
        out["dapr-caller-app-id"] = self.caller_app_id
        out["dapr-callee-app-id"] = app_id
        out.setdefault("content-type", "application/json; charset=utf-8")
        delays = policy.retry.delays() if policy.retry else iter(())
        path = "/" + "/".join(p for p in method.split("/") if p not in ("", ".", ".."))
        while True:
            target = self.pick(app_id)
            url = f"{target.app_base_url}{path}" + (f"?{query}" if query else "")
            error: str | None = None
            try:
                async with self.session().request(
                    verb,
                    url,
                    data=body,
                    headers=out,
                    allow_redirects=False,
                    timeout=aiohttp.ClientTimeout(total=policy.timeout or 60),
                ) as resp:
                    result = AppResponse(resp.status, CIMultiDict(resp.headers), await resp.read())
                if result.status < 500 or policy.retry is None:
                    if policy.breaker is not None:
                        policy.breaker.record(result.status < 500)
                    return result
                error = f"status {result.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                self.registry.invalidate()
                error = str(exc) or type(exc).__name__
                result = None
            if policy.breaker is not None:
                policy.breaker.record(False)
            delay = next(delays, None)
            if delay is None or (policy.breaker is not None and not policy.breaker.allow()):
                if result is not None:
                    return result
                raise invoke_error(app_id, error)
            await asyncio.sleep(delay)
