"""POST /v1/readings answered without FastAPI's routing (ASGI middleware).

Senders post one reading per request (bench_pipeline: 1,000 machines x 1 reading), so the route's
fixed cost is paid per reading: FastAPI matches the request against every route, builds a Request,
solves the endpoint's dependencies and wraps the answer, and that cost more CPU than validating and
applying the reading (bench/bench_ingestion_route.py). The route still exists, with its response
models, for /docs and OpenAPI, and gives the very same answers through the same `answer` function;
this middleware only takes the request to that function first. It sits inside the metrics,
app-token and RequestGuard middlewares, so the request is still counted (under the route's path),
refused without the token, and size-, type- and depth-checked before it gets here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
# (status, JSON body, extra headers) for a request body, given the app (its state holds the service).
Answer = Callable[[Any, bytes], Awaitable[tuple[int, bytes, dict[str, str]]]]


@dataclass(frozen=True)
class _Route:
    """What the metrics middleware reads of a matched route (apps/common/metrics.py `_route_of`)."""

    path: str


class PostShortcut:
    """ASGI middleware: `POST <path>` straight to `answer`; every other request goes to the app."""

    def __init__(self, app: ASGIApp, path: str, answer: Answer) -> None:
        self.app = app
        self.path = path
        self.answer = answer
        self._route = _Route(path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        scope["route"] = self._route
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, content, headers = await self.answer(scope.get("app"), bytes(body))
        raw_headers = [
            (b"content-length", str(len(content)).encode()),
            (b"content-type", b"application/json"),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()),
        ]
        await send({"type": "http.response.start", "status": status, "headers": raw_headers})
        await send({"type": "http.response.body", "body": content})
