"""The app the sidecar benchmark talks to: an echo route and a subscription that records latency."""

from __future__ import annotations

import time

from dapr.ext.fastapi import DaprApp
from fastapi import Body, FastAPI, Request, Response

app = FastAPI()
dapr_app = DaprApp(app)
latencies: list[float] = []


@app.post("/echo")
async def echo(request: Request) -> Response:
    return Response(content=await request.body(), media_type="application/json")


@dapr_app.subscribe(pubsub="pubsub", topic="bench")
async def on_bench(event: dict = Body(...)) -> dict[str, str]:
    latencies.append(time.time() - float(event["data"]["sent"]))
    return {"status": "SUCCESS"}


@app.post("/direct")
async def direct(event: dict = Body(...)) -> dict[str, str]:
    latencies.append(time.time() - float(event["data"]["sent"]))
    return {"status": "SUCCESS"}


@app.get("/latencies")
async def get_latencies() -> list[float]:
    return latencies


@app.delete("/latencies")
async def clear_latencies() -> dict[str, int]:
    n = len(latencies)
    latencies.clear()
    return {"cleared": n}
