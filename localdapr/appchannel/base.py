"""What every app channel offers, and the shapes of the calls and answers that cross it."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import grpc
from multidict import CIMultiDict

# daprd's default when a caller gives no content type (invokev1.JSONContentType plus charset, as the
# HTTP API has always sent it to apps).
DEFAULT_CONTENT_TYPE = "application/json; charset=utf-8"


@dataclass(slots=True)
class GrpcReply:
    """A gRPC app's own answer to OnInvoke, kept so gRPC callers get it as daprd passes it through:
    the status (with its details in the trailers), the InvokeResponse and the app's metadata."""

    code: grpc.StatusCode
    message: str
    response: Any  # common_v1.InvokeResponse (empty when the app failed)
    headers: tuple[tuple[str, str | bytes], ...] = ()
    trailers: tuple[tuple[str, str | bytes], ...] = ()


@dataclass(slots=True)
class AppResponse:
    """An app's answer in HTTP terms; a gRPC app's answer translated as daprd's HTTP API does, with the
    original in `grpc`."""

    status: int
    headers: CIMultiDict[str]
    body: bytes
    grpc: GrpcReply | None = None

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(slots=True)
class MethodCall:
    """One service invocation as daprd carries it to the callee (InvokeMethodRequest)."""

    method: str  # the method name (for HTTP apps the path), without a leading slash
    verb: str  # the HTTP extension's verb; "" when a gRPC caller sent none
    query: str
    headers: CIMultiDict[str]  # the caller's headers or gRPC metadata, plus dapr-caller/callee-app-id
    data: bytes
    content_type: str  # "" when the caller gave none
    type_url: str = ""  # a gRPC caller's Any.type_url, passed on to a gRPC app


class AppChannel(Protocol):
    """The sidecar's way to its app (daprd's channel.AppChannel): HTTP or the AppCallback gRPC service.

    `request` is daprd's InvokeMethod for the sidecar's own calls (an HTTP-shaped call, which the gRPC
    channel sends as OnInvoke); `invoke` carries a service invocation; `probe` is one app health probe.
    Pub/sub and input bindings reach the app through per-protocol sinks (localdapr/pubsub/delivery.py,
    localdapr/bindings/delivery.py) built on a channel.
    """

    protocol: ClassVar[str]
    # Whether the app can host actors: daprd reads an app's actor configuration (GET /dapr/config)
    # over HTTP only; its gRPC channel has none, so a gRPC app hosts no actors.
    hosts_actors: ClassVar[bool]
    host: str
    port: int
    ready: bool

    async def wait_ready(self, timeout: float, stop: asyncio.Event | None = None) -> bool: ...

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: dict[str, str] | CIMultiDict[str] | None = None,
        query: str = "",
        timeout: float | None = 60.0,
    ) -> AppResponse: ...

    async def invoke(self, call: MethodCall, timeout: float | None) -> AppResponse: ...

    async def probe(self, timeout: float) -> bool:
        """One health probe: True when the app answers healthy within `timeout` seconds."""
        ...

    async def close(self) -> None: ...


async def port_open(host: str, port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 1.0)
    except (OSError, TimeoutError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True


async def wait_for_port(host: str, port: int, timeout: float, stop: asyncio.Event | None = None) -> bool:
    """Wait until the app listens on its port (daprd waits the same way before its first app calls)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if stop is not None and stop.is_set():
            return False
        if await port_open(host, port):
            return True
        await asyncio.sleep(0.05)
    return False
