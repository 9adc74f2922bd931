"""PostShortcut, as ingestion's POST /v1/readings uses it: past FastAPI's routing, the same answers as
the declared route, still counted under the route's path, and every other request left to the app."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from starlette.requests import Request

from apps.common.contracts import HealthSnapshot, IngestResult, ReadingRejection
from apps.common.fastroute import PostShortcut
from apps.ingestion import app as ingestion_app
from tests.unit.ingestion.test_ingestion_service import RecordingEquipment, RecordingPublisher, service
from tests.unit.ingestion.test_validation import good

JSON = {"content-type": "application/json"}


@pytest.fixture
def client() -> Iterator[TestClient]:
    ingestion_app.app.state.service = service(RecordingEquipment(failing={"down-1"}), RecordingPublisher())
    yield TestClient(ingestion_app.app)
    del ingestion_app.app.state.service


def _unclocked(content: bytes) -> bytes:
    return re.sub(rb'"updated_at":"[^"]*"', b'"updated_at":""', content)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _through_fastapi_route(body: bytes) -> tuple[int, bytes, dict[str, str]]:
    """What the declared FastAPI route answers for `body` (the shortcut never lets it run)."""
    scope: dict[str, Any] = {
        "type": "http",
        "method": "POST",
        "path": ingestion_app.READINGS_PATH,
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
        "app": ingestion_app.app,
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    response = asyncio.run(ingestion_app.post_readings(Request(scope, receive)))
    return response.status_code, bytes(response.body), dict(response.headers)


BODIES = {
    "accepted": json.dumps([good(seq=1, eq="m1", timestamp=_now())]).encode(),
    "partly rejected": json.dumps(
        [good(seq=1, eq="m2", timestamp=_now()), good(seq=2, eq="bad id!", timestamp=_now())]
    ).encode(),
    "all rejected": json.dumps([good(seq=1, eq="bad id!", timestamp=_now())]).encode(),
    "actor down": json.dumps([good(seq=1, eq="down-1", timestamp=_now())]).encode(),
    "malformed": b'[{"equipment_id": ',
    "no readings": b"[]",
    "extra envelope field": b'{"readings": [], "x": 1}',
}


@pytest.mark.parametrize("case", list(BODIES))
def test_the_shortcut_answers_as_the_declared_route(client: TestClient, case: str) -> None:
    body = BODIES[case]
    shortcut = client.post(ingestion_app.READINGS_PATH, content=body, headers=JSON)
    status, content, headers = _through_fastapi_route(body)
    # byte for byte, but for the fake actor's clock
    assert (shortcut.status_code, _unclocked(shortcut.content)) == (status, _unclocked(content))
    assert shortcut.headers["content-type"] == headers["content-type"] == "application/json"
    assert shortcut.headers.get("retry-after") == headers.get("retry-after")
    if case == "actor down":
        assert status == 503 and headers["retry-after"] == str(
            ingestion_app.get_settings().retry_after_seconds
        )


def test_the_answer_is_the_document_the_response_model_gave_before() -> None:
    # Before: JSONResponse(result.model_dump(mode="json")); now pydantic's JSON text directly.
    result = IngestResult(
        accepted=1,
        duplicates=2,
        rejected=[
            ReadingRejection(index=3, equipment_id="m-1", reason="bad values: «nan» ✗", retryable=True)
        ],
        health={
            "m-1": HealthSnapshot(
                equipment_id="m-1",
                profile="turbofan",
                last_seq=7,
                readings_applied=8,
                duplicates=0,
                predicted_rul=123.456789,
                status="ok",
                updated_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
            )
        },
    )
    before = JSONResponse(result.model_dump(mode="json")).body
    now = result.__pydantic_serializer__.to_json(result)
    assert json.loads(now) == json.loads(before)


def test_readings_are_still_counted_under_the_route(client: TestClient) -> None:
    def counted() -> float:
        text = client.get("/metrics").text
        line = next(
            (
                x
                for x in text.splitlines()
                if x.startswith("vigil_http_requests_total{")
                and 'route="/v1/readings"' in x
                and 'status="200"' in x
                and 'method="POST"' in x
            ),
            None,
        )
        return float(line.rsplit(" ", 1)[1]) if line else 0.0

    before = counted()
    answer = client.post(ingestion_app.READINGS_PATH, content=BODIES["accepted"], headers=JSON)
    assert answer.status_code == 200
    assert counted() == before + 1


def test_other_requests_go_to_the_app(client: TestClient) -> None:
    assert client.get(ingestion_app.READINGS_PATH).status_code == 405  # FastAPI's answer, as before
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/v1/profiles").status_code == 200


async def test_a_client_gone_before_its_body_arrived_gets_nothing_and_costs_nothing() -> None:
    answered: list[bytes] = []
    sent: list[dict[str, Any]] = []

    async def answer(app: Any, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        answered.append(body)
        return 200, b"{}", {}

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the shortcut's path must not reach the app")

    shortcut = PostShortcut(inner, "/v1/readings", answer)

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await shortcut({"type": "http", "method": "POST", "path": "/v1/readings"}, receive, send)
    assert answered == [] and sent == []


async def test_a_body_in_parts_is_answered_whole_with_its_headers() -> None:
    parts = iter([b'{"rea', b'dings": []}'])

    async def answer(app: Any, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        return 503, b'{"ok":' + str(body == b'{"readings": []}').lower().encode() + b"}", {"Retry-After": "1"}

    async def receive() -> dict[str, Any]:
        part = next(parts)
        return {"type": "http.request", "body": part, "more_body": part.startswith(b"{")}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("the shortcut's path must not reach the app")

    await PostShortcut(inner, "/v1/readings", answer)(
        {"type": "http", "method": "POST", "path": "/v1/readings"}, receive, send
    )
    assert sent[0]["status"] == 503
    assert (b"retry-after", b"1") in sent[0]["headers"]
    assert (b"content-length", b"11") in sent[0]["headers"]
    assert sent[1]["body"] == b'{"ok":true}'
