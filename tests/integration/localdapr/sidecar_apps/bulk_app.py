"""A small app for the bulkSubscribe tests: it declares a bulk subscription on GET /dapr/subscribe and
answers each entry of a bulk delivery by its event's `data.answer` (SUCCESS, DROP, RETRY_ONCE: RETRY
the first time that event is seen, then SUCCESS). TOPIC_PREFIX=p makes the topic p+"bulk"."""

from __future__ import annotations

import os
from typing import Any

from fastapi import FastAPI, Request

T = os.environ.get("TOPIC_PREFIX", "")
MAX_MESSAGES = int(os.environ.get("BULK_MAX_MESSAGES", "5"))

app = FastAPI()
envelopes: list[dict[str, Any]] = []
seen: set[str] = set()


@app.get("/dapr/subscribe")
def subscriptions() -> list[dict[str, Any]]:
    return [
        {
            "pubsubname": "pubsub",
            "topic": T + "bulk",
            "route": "/bulk",
            "bulkSubscribe": {"enabled": True, "maxMessagesCount": MAX_MESSAGES, "maxAwaitDurationMs": 300},
        }
    ]


@app.post("/bulk")
async def on_bulk(request: Request) -> dict[str, Any]:
    envelope = await request.json()
    envelope["headers"] = {"content-type": request.headers.get("content-type", "")}
    envelopes.append(envelope)
    statuses = []
    for entry in envelope["entries"]:
        event = entry["event"]
        answer = event["data"]["answer"]
        if answer == "RETRY_ONCE":
            answer = "SUCCESS" if event["id"] in seen else "RETRY"
            seen.add(event["id"])
        statuses.append({"entryId": entry["entryId"], "status": answer})
    return {"statuses": statuses}


@app.get("/received")
def received() -> dict[str, Any]:
    return {"envelopes": envelopes}
