"""Service invocation: find the target app among the running instances and forward the call to it.

As daprd, the call goes to the callee's sidecar (localdapr/invocation/internal.py), which applies its
access control and calls its app over its app channel (HTTP, or AppCallback.OnInvoke for a gRPC app)
with its app token. Resiliency for the target app (timeout, retries, circuit breaker) is applied here,
on the caller's side, as daprd does. A callee whose health checks fail answers daprd's "app is not in a
healthy state" error, as its sidecar would.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
from dapr.proto import common_v1
from multidict import CIMultiDict

from localdapr import inprocess
from localdapr.appchannel import AppResponse, MethodCall
from localdapr.errors import DaprError
from localdapr.invocation import internal
from localdapr.invocation.nameresolution import AppInstance, NameRegistry
from localdapr.resiliency import Resiliency
from localdapr.trust import SidecarTrust

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

# What daprd's caller reports for a callee whose app is unhealthy: the callee's app channel refuses
# the call and its CallLocal wraps that refusal.
APP_UNHEALTHY = (
    "rpc error: code = Internal desc = error invoking app channel: "
    "rpc error: code = Internal desc = app is not in a healthy state"
)

_VERBS = {v: k for k, v in common_v1.HTTPExtension.Verb.items()}


def invoke_error(app_id: str, message: str) -> DaprError:
    return DaprError(
        "ERR_DIRECT_INVOKE", f"failed to invoke, id: {app_id}, err: {message}", 500, grpc.StatusCode.INTERNAL
    )


@dataclass
class Invoker:
    caller_app_id: str
    registry: NameRegistry
    resiliency: Resiliency
    trust: SidecarTrust
    _session: aiohttp.ClientSession | None = None
    _round_robin: dict[str, itertools.count[int]] = field(default_factory=dict)

    def session(self) -> aiohttp.ClientSession:
        """One pool of connections to the other sidecars, kept for the connections it pools."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=256), auto_decompress=False
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

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
        *,
        content_type: str | None = None,
        type_url: str = "",
    ) -> AppResponse:
        """Call `method` of `app_id`. `verb` is "" when a gRPC caller sent no HTTP extension;
        `content_type` is a gRPC caller's (HTTP callers' is their Content-Type header)."""
        policy = self.resiliency.for_app(app_id)
        if policy.breaker is not None and not policy.breaker.allow():
            raise invoke_error(app_id, "circuit breaker is open")
        out = CIMultiDict((k, v) for k, v in CIMultiDict(headers).items() if k.lower() not in HOP_HEADERS)
        out["dapr-caller-app-id"] = self.caller_app_id
        out["dapr-callee-app-id"] = app_id
        call = MethodCall(
            method="/".join(p for p in method.split("/") if p not in ("", ".", "..")),
            verb=verb,
            query=query,
            headers=out,
            data=body,
            content_type=out.get("content-type", "") if content_type is None else content_type,
            type_url=type_url,
        )
        delays = policy.retry.delays() if policy.retry else iter(())
        while True:
            target = self.pick(app_id)
            result: AppResponse | None = None
            if not target.app_healthy:
                self.registry.invalidate()  # a retry sees the callee as soon as it is healthy again
                error = APP_UNHEALTHY
            else:
                try:
                    in_process = inprocess.find(target.instance_id)
                    if in_process is not None and in_process.trusts(self.trust):
                        # The callee's sidecar is in this process: handed over in memory.
                        result = await in_process.invoke(call, self.trust, policy.timeout or 60)
                    else:
                        result = await internal.forward(
                            self.session(), target, call, self.trust, policy.timeout or 60
                        )
                    if result.status < 500 or policy.retry is None:
                        if policy.breaker is not None:
                            policy.breaker.record(result.status < 500)
                        return result
                    error = f"status {result.status}"
                except (aiohttp.ClientError, TimeoutError, OSError, internal.AppUnreachable) as exc:
                    self.registry.invalidate()
                    error = str(exc) or type(exc).__name__
            if policy.breaker is not None:
                policy.breaker.record(False)
            delay = next(delays, None)
            if delay is None or (policy.breaker is not None and not policy.breaker.allow()):
                if result is not None:
                    return result
                raise invoke_error(app_id, error)
            await asyncio.sleep(delay)


async def invoke_service(api: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
    """gRPC `InvokeService`, as daprd answers it for either kind of callee.

    A gRPC callee's InvokeResponse, metadata and status reach the caller as the app gave them. An HTTP
    callee's status is sent as `dapr-http-status`; one of 400 and above fails the call.
    """
    message = request.message
    verb = _VERBS[message.http_extension.verb] if message.http_extension.verb else ""
    headers = {
        k: v for k, v in context.invocation_metadata() if not k.startswith(":") and k != "content-type"
    }
    result = await api.ctx.invoker.invoke(
        request.id,
        message.method,
        verb,
        bytes(message.data.value),
        headers,
        message.http_extension.querystring,
        content_type=message.content_type,
        type_url=message.data.type_url,
    )
    if result.grpc is not None:
        reply = result.grpc
        await context.send_initial_metadata(reply.headers)
        if reply.code is not grpc.StatusCode.OK:
            await context.abort(reply.code, reply.message, trailing_metadata=reply.trailers)
        context.set_trailing_metadata(reply.trailers)
        return reply.response
    await context.send_initial_metadata((("dapr-http-status", str(result.status)),))
    if result.status >= 400:
        await context.abort(
            grpc.StatusCode.UNKNOWN if result.status >= 500 else grpc.StatusCode.INVALID_ARGUMENT,
            f"HTTP {result.status}: {result.body.decode(errors='replace')}",
        )
    response = common_v1.InvokeResponse(content_type=result.headers.get("content-type", ""))
    response.data.value = result.body
    return response
