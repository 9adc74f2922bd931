"""Sample app 2: every two seconds invokes `counter` through Dapr and publishes a greeting."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

from dapr.aio.clients import DaprClient
from fastapi import FastAPI

logging.basicConfig(level=logging.INFO, format="%(message)s")
log = logging.getLogger("greeter")


async def greet_forever() -> None:
    async with DaprClient() as client:
        while True:
            try:
                resp = await client.invoke_method("counter", "increment", data=b"", http_verb="POST")
                count = json.loads(resp.data)["count"]
                await client.publish_event(
                    "pubsub", "greetings", json.dumps({"hello": count}), data_content_type="application/json"
                )
                log.info("greeting #%d sent", count)
            except Exception as exc:  # keep the sample alive while the counter starts
                log.info("counter not reachable yet: %s", exc)
            await asyncio.sleep(2)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    task = asyncio.create_task(greet_forever())
    yield
    task.cancel()


app = FastAPI(title="hello-greeter", lifespan=lifespan)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
