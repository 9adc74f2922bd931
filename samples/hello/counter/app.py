"""Sample app 1: keeps a counter in the Dapr state store and logs every greeting event it receives."""

from __future__ import annotations

import json
import logging

from dapr.aio.clients import DaprClient
from dapr.ext.fastapi import DaprApp
from fastapi import Body, FastAPI

logging.basicConfig(level=logging.INFO, format="%(message)s")
log = logging.getLogger("counter")
app = FastAPI(title="hello-counter")
dapr_app = DaprApp(app)


@app.post("/increment")
async def increment() -> dict[str, int]:
    async with DaprClient() as client:
        current = await client.get_state("statestore", "count")
        value = int(current.data or b"0") + 1
        await client.save_state("statestore", "count", str(value))
    return {"count": value}


@dapr_app.subscribe(pubsub="pubsub", topic="greetings")
async def on_greeting(event: dict = Body(...)) -> dict[str, str]:
    log.info("received greeting event: %s", json.dumps(event.get("data")))
    return {"status": "SUCCESS"}
