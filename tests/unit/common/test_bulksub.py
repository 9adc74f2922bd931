"""The app side of bulkSubscribe: telling a bulk envelope from a single CloudEvent, the answer, and
the subscription entry BulkDaprApp serves on GET /dapr/subscribe."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from apps.common import httpguard
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


def _envelope(event: str) -> bytes:
    head = f'{{"id": "x", "type": "{BULK_EVENT_TYPE}", "topic": "t", "pubsubname": "ps", "entries": '
    return f'{head}[{{"entryId": "1", "event": {event}}}]}}'.encode()


# Bodies where orjson and json could part: each must give what json alone gives (or None when json
# refuses it, a BulkEntry list otherwise).
EDGE_BODIES = {
    "a plain event": _envelope('{"id": "e1", "data": {"s": 641.82, "t": -0.0, "u": 1e-7}}'),
    "NaN and Infinity literals": _envelope('{"data": [NaN, Infinity, -Infinity]}'),
    "a number too large for a float": _envelope('{"data": 1e400}'),
    "an integer past 64 bits": _envelope('{"seq": 123456789012345678901234567890}'),
    "an integer just past 64 bits": _envelope('{"seq": 18446744073709551616}'),
    "an integer just below -2**63": _envelope('{"seq": -9223372036854775809}'),
    "the largest 64-bit integers": _envelope(
        "[9223372036854775807, 18446744073709551615, -9223372036854775808]"
    ),
    "a float with 19 digits": _envelope("0.1234567890123456789"),
    "a lone surrogate escape": _envelope('{"id": "\\ud800"}'),
    "non-ASCII text": _envelope('{"id": "pompe-é ✗"}'),
    "a duplicate key": _envelope('{"seq": 1, "seq": 2}'),
    "a byte-order mark": b"\xef\xbb\xbf" + _envelope("1"),
    "UTF-16": _envelope("1").decode().encode("utf-16"),
    "bytes that are no text": _envelope('"x"').replace(b'"x"', b'"\xff"'),
    "text that is no JSON": b'{"type": "com.dapr.event.sent.bulk", "entries": [',
}


@pytest.mark.parametrize("case", list(EDGE_BODIES))
def test_entries_are_what_json_alone_reads(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    body = EDGE_BODIES[case]
    decoded = bulk_entries(body, "application/json")
    monkeypatch.setattr(httpguard, "has_long_digit_run", lambda body: True)  # every body to json
    by_json = bulk_entries(body, "application/json")
    # NaN is not equal to itself, and 1 == 1.0: compared by repr.
    assert repr(decoded) == repr(by_json)


def test_plain_envelopes_are_decoded_by_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(body: bytes) -> None:
        raise AssertionError("decoded by json")

    monkeypatch.setattr(json, "loads", refuse)
    assert bulk_entries(EDGE_BODIES["a plain event"], "application/json") == [
        BulkEntry("1", {"id": "e1", "data": {"s": 641.82, "t": -0.0, "u": 1e-7}})
    ]
