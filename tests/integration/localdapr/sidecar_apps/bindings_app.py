"""A small app for the localdapr bindings tests: routes for input bindings that record every request.

Each request the sidecar makes (POST deliveries and OPTIONS probes alike) is recorded with its
method, path, headers, body and arrival time; `GET /calls` returns them (optionally for one path).
Routes exist for POST only, so an OPTIONS probe on them answers 405 (which daprd reads as "the app
handles this binding") and on any other path 404 ("it does not").

`POST /flaky/<name>` fails (HTTP 500) the first FAIL_FIRST times it is called for each name.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response

FAIL_FIRST = int(os.environ.get("FAIL_FIRST", "2"))

app = FastAPI()
calls: list[dict[str, Any]] = []
attempts: dict[str, int] = defaultdict(int)


@app.middleware("http")
async def record(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    if request.url.path != "/calls":
        calls.append(
            {
                "method": request.method,
                "path": request.url.path,
                "headers": dict(request.headers),
                "body": (await request.body()).decode(errors="replace"),
                "at": time.time(),
            }
        )
    return await call_next(request)


@app.post("/tick")
@app.post("/every-second")
@app.post("/custom/route")
@app.post("/explicit")
async def ok() -> dict[str, str]:
    return {}


@app.post("/flaky/{name}")
async def flaky(name: str) -> Response:
    attempts[name] += 1
    if attempts[name] <= FAIL_FIRST:
        return Response("not yet", status_code=500)
    return Response(status_code=200)


@app.get("/calls")
async def get_calls(path: str | None = None) -> list[dict[str, Any]]:
    return [c for c in calls if path is None or c["path"] == path]
