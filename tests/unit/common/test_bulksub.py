"""The app side of bulkSubscribe: telling a bulk envelope from a single CloudEvent, the answer, and
the subscription entry BulkDaprApp serves on GET /dapr/subscribe."""

from __future__ import annotations

import json

from fastapi import FastAPI
from fastapi.testclient import TestClient

from apps.common.bulksub import BULK_EVENT_TYPE, BulkDaprApp, BulkEntry, bulk_answer, bulk_entries

ENVELOPE = {
    "id": "x",
    "type": BULK_EVENT_TYPE,
    "topic": "t",
    "pubsubname": "ps",
    "entries": [
        {"entryId": "1", "event": {"id": "e1", "data": 1}, "contentType": "application/cloudevents+json"},
        {"event": {"id": "no entry id"}},  # cannot be answered: left for the sidecar to retry
        {"entryId": "2", "event": "cmF3", "contentType": "application/octet-stream"},
    ],
}


def test_bulk_envelope_is_read_and_single_events_are_not() -> None:
    body = json.dumps(ENVELOPE).encode()
    assert bulk_entries(body, "application/json") == [
        BulkEntry("1", {"id": "e1", "data": 1}),
        BulkEntry("2", "cmF3"),
    ]
    # What a sidecar sends one at a time is never taken for a bulk envelope.
    assert bulk_entries(body, "application/cloudevents+json") is None
    single = json.dumps({"id": "e", "type": "com.dapr.event.sent", "data": {"entries": []}}).encode()
    assert bulk_entries(single, "application/json") is None
    assert bulk_entries(b"{not json", "application/json") is None
    assert bulk_entries(json.dumps({**ENVELOPE, "entries": "x"}).encode(), "application/json") is None


def test_bulk_answer_names_every_entry() -> None:
    assert bulk_answer([("1", "SUCCESS"), ("2", "DROP")]) == {
        "statuses": [{"entryId": "1", "status": "SUCCESS"}, {"entryId": "2", "status": "DROP"}]
    }


def test_bulk_dapr_app_serves_bulk_and_plain_subscriptions() -> None:
    app = FastAPI()
    dapr_app = BulkDaprApp(app)
    limits = [(10, 20)]

    async def handler() -> dict[str, str]:
        return {"status": "SUCCESS"}

    dapr_app.subscribe(pubsub="ps", topic="plain")(handler)
    dapr_app.bulk_subscribe(pubsub="ps", topic="many", limits=lambda: limits[0])(handler)
    client = TestClient(app)
    subs = {s["topic"]: s for s in client.get("/dapr/subscribe").json()}
    assert "bulkSubscribe" not in subs["plain"]
    assert subs["many"]["route"] == "/events/ps/many"
    assert subs["many"]["bulkSubscribe"] == {
        "enabled": True,
        "maxMessagesCount": 10,
        "maxAwaitDurationMs": 20,
    }
    limits[0] = (5, 7)  # read when asked, not when declared
    subs = {s["topic"]: s for s in client.get("/dapr/subscribe").json()}
    assert subs["many"]["bulkSubscribe"]["maxMessagesCount"] == 5
    assert client.post("/events/ps/many").json() == {"status": "SUCCESS"}
