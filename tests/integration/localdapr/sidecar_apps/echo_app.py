"""A small app used by the localdapr tests: Dapr subscriptions that succeed, retry or drop, and
invocation endpoints that echo, fail with a chosen status, or call another app through Dapr.

Behaviour is chosen by environment variables so one file serves every test:
FAIL_FIRST=N   the first N deliveries on topic "flaky" fail (alternating RETRY and HTTP 500);
SLOW_MS=N      each "orders" delivery takes N milliseconds;
HOLD_AFTER=N   "orders" deliveries after the first N wait until POST /release (so a test can crash the
               sidecar at a known point mid-stream, however fast the machine);
TOPIC_PREFIX=p topics are p+name, so runs against a persistent broker (Redis) never share streams.
"""

from __future__ import annotations

import asyncio
import os
from collections import defaultdict
from typing import Any

from dapr.aio.clients import DaprClient
from dapr.ext.fastapi import DaprApp
from fastapi import Body, FastAPI, Request, Response
from fastapi.responses import JSONResponse

PUBSUB = os.environ.get("TEST_PUBSUB", "pubsub")
FAIL_FIRST = int(os.environ.get("FAIL_FIRST", "0"))
SLOW_MS = int(os.environ.get("SLOW_MS", "0"))
HOLD_AFTER = int(os.environ.get("HOLD_AFTER", "-1"))
T = os.environ.get("TOPIC_PREFIX", "")

app = FastAPI()
dapr_app = DaprApp(app)
received: dict[str, list[dict[str, Any]]] = defaultdict(list)
echoed: list[str] = []
attempts: dict[str, int] = defaultdict(int)
released = asyncio.Event()
held = 0  # "orders" deliveries waiting for /release right now


def record(topic: str, event: dict[str, Any]) -> None:
    received[topic].append(event)


@dapr_app.subscribe(pubsub=PUBSUB, topic=T + "orders")
async def on_order(event: dict = Body(...)) -> dict[str, str]:
    global held
    if SLOW_MS:
        await asyncio.sleep(SLOW_MS / 1000)
    if 0 <= HOLD_AFTER <= len(received["orders"]) and not released.is_set():
        held += 1
        try:
            await released.wait()
        finally:
            held -= 1
    record("orders", event)
    return {"status": "SUCCESS"}


@dapr_app.subscribe(pubsub=PUBSUB, topic=T + "flaky")
async def on_flaky(event: dict = Body(...)) -> Response:
    key = str(event.get("id"))
    attempts[key] += 1
    if attempts[key] <= FAIL_FIRST:
        if attempts[key] % 2:
            return JSONResponse({"status": "RETRY"})
        return JSONResponse({"error": "boom"}, status_code=500)
    record("flaky", event)
    return JSONResponse({"status": "SUCCESS"})


@dapr_app.subscribe(pubsub=PUBSUB, topic=T + "poison", dead_letter_topic=T + "poison-dead")
async def on_poison(event: dict = Body(...)) -> dict[str, str]:
    record("poison-attempts", event)
    return {"status": "DROP"}


@dapr_app.subscribe(pubsub=PUBSUB, topic=T + "poison-dead")
async def on_poison_dead(event: dict = Body(...)) -> dict[str, str]:
    record("poison-dead", event)
    return {"status": "SUCCESS"}


@dapr_app.subscribe(pubsub=PUBSUB, topic=T + "raw", metadata={"rawPayload": "true"})
async def on_raw(event: dict = Body(...)) -> dict[str, str]:
    record("raw", event)
    return {"status": "SUCCESS"}


# Routes for declarative subscriptions (tests write Subscription files pointing here).
@app.post("/declared/{name}")
async def on_declared(name: str, request: Request) -> dict[str, str]:
    event = await request.json()
    event["_content_type"] = request.headers.get("content-type", "")
    event["_traceparent"] = request.headers.get("traceparent", "")
    record(f"declared-{name}", event)
    return {"status": "SUCCESS"}


@app.get("/held")
async def get_held() -> int:
    return held


@app.post("/release")
async def release() -> None:
    released.set()


@app.get("/received/{topic}")
async def get_received(topic: str) -> list[dict[str, Any]]:
    return received[topic]


@app.api_route("/echo/{tail:path}", methods=["GET", "POST", "PUT", "DELETE", "PATCH"])
async def echo(tail: str, request: Request) -> dict[str, Any]:
    echoed.append(f"{request.method} {tail}")
    return {
        "method": request.method,
        "path": tail,
        "query": dict(request.query_params),
        "body": (await request.body()).decode(),
        "caller": request.headers.get("dapr-caller-app-id"),
        "x_custom": request.headers.get("x-custom"),
        "traceparent": request.headers.get("traceparent"),
        "app_id": os.environ.get("APP_ID"),
        "app_token": request.headers.get("dapr-api-token"),  # what the sidecar sends (APP_API_TOKEN)
    }


@app.get("/echoed")
async def get_echoed() -> list[str]:
    """Every echo call this app saw (access control tests: a denied call never arrives)."""
    return echoed


@app.get("/status/{code}")
async def status(code: int) -> Response:
    return JSONResponse({"message": f"you asked for {code}"}, status_code=code)


@app.get("/call/{target}/{tail:path}")
async def call_other(target: str, tail: str) -> Response:
    """Invoke another app through this app's own sidecar (app-to-app invocation)."""
    async with DaprClient() as client:
        resp = await client.invoke_method(target, f"echo/{tail}", data=b"", http_verb="GET")
    return Response(content=resp.data, media_type="application/json")
