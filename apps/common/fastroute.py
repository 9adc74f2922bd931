"""`POST <path>` answered without FastAPI's routing (ASGI middleware), for an app's hot route.

A sender of one reading per request (bench_pipeline: 1,000 machines x 1 reading) pays the route's
fixed cost per reading: FastAPI matches the request against every route, builds a Request, solves the
endpoint's dependencies and wraps the answer, and for ingestion's POST /v1/readings that cost more CPU
than validating and applying the reading (bench/bench_ingestion_route.py); inference's POST /v1/predict
likewise (bench/bench_inference_route.py). The app still declares the route, with its response models,
for /docs and OpenAPI, and gives the very same answers through the same `answer` function; this
middleware only takes the request to that function first. Added first (innermost), it sits inside the
app's metrics, app-token and RequestGuard middlewares, so the request is still counted (under the
route's path), refused without the token, and size-, type- and depth-checked before it gets here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from apps.common.asgi import ASGIApp, MatchedRoute, Receive, Scope, Send, read_body, send_answer

# (status, JSON body, extra headers) for a request body, given the app (its state holds the service).
Answer = Callable[[Any, bytes], Awaitable[tuple[int, bytes, dict[str, str]]]]


class PostShortcut:
    """ASGI middleware: `POST <path>` straight to `answer`; every other request goes to the app."""

    def __init__(self, app: ASGIApp, path: str, answer: Answer) -> None:
        self.app = app
        self.path = path
        self.answer = answer
        self._route = MatchedRoute(path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        scope["route"] = self._route
        body = await read_body(receive)
        if body is None:
            return
        status, content, headers = await self.answer(scope.get("app"), body)
        extra = ((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
        await send_answer(send, status, content, b"application/json", extra)
