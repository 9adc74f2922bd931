"""What the apps' pure ASGI middlewares share: the ASGI callable types, reading a request's whole
body, sending a complete answer, and the route a shortcut middleware reports as matched."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class MatchedRoute:
    """Stands for the route a request was answered under, in `scope["route"]`, when a middleware
    answers it without routing: the metrics middleware (apps/common/metrics.py) reads its `path`."""

    path: str


async def read_body(receive: Receive) -> bytes | None:
    """The request's whole body, or None when the client went away before sending it."""
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if not message.get("more_body"):
            return bytes(body)


async def send_answer(
    send: Send, status: int, body: bytes, content_type: bytes, headers: Iterable[tuple[bytes, bytes]] = ()
) -> None:
    """A complete answer: status, length, content type and `headers`, then the body in one message."""
    raw_headers = [(b"content-length", str(len(body)).encode()), (b"content-type", content_type), *headers]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})
