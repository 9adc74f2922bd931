"""RequestGuard and the bounded JSON parser, on a bare FastAPI app: hostile bodies get a 4xx (or a DROP
for a pub/sub delivery) before any route parses them, and good ones reach the route unchanged."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from apps.common.httpguard import (
    MAX_JSON_DEPTH,
    BadJson,
    RequestGuard,
    json_depth,
    non_finite_number,
    parse_json,
)

JSON = {"content-type": "application/json"}


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    app.add_middleware(RequestGuard, max_body_bytes=1000)

    @app.post("/v1/echo")
    async def echo(request: Request) -> dict[str, object]:
        return {"got": json.loads(await request.body() or b"null")}

    @app.delete("/v1/thing")
    async def delete(request: Request) -> dict[str, object]:
        return {"got": json.loads(await request.body() or b"null")}

    @app.post("/events/pubsub/topic")
    async def delivery(request: Request) -> dict[str, object]:
        return {"status": "SUCCESS", "size": len(await request.body())}

    @app.put("/actors/T/1/method/M")
    async def actor(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    return TestClient(app)


@pytest.mark.parametrize(
    ("body", "depth"),
    [
        (b"1", 0),
        (b"[]", 1),
        (b'{"a": [1, {"b": []}]}', 4),
        (b'["[[[[", "\\"[[["]', 1),  # brackets inside strings, escaped quotes included, do not count
        (b"[]" * 1000, 1),
    ],
)
def test_json_depth(body: bytes, depth: int) -> None:
    assert json_depth(body) == depth


def test_depth_of_a_big_body_is_found() -> None:
    assert json_depth(b"[]" * 4_000_000) == 1  # 8 MB of brackets: the worst case, vectorised
    assert json_depth(b"[" * 40 + b"]" * 40 + b"[]" * 1_000_000) == 40


def test_parse_json_refuses_deep_nesting_before_the_parser_recurses() -> None:
    with pytest.raises(BadJson, match=f"deeper than {MAX_JSON_DEPTH}"):
        parse_json(b"[" * 100_000 + b"]" * 100_000)
    with pytest.raises(BadJson, match="malformed JSON"):
        parse_json(b'{"a": ')
    assert parse_json(b'{"a": [1]}') == {"a": [1]}


def test_deeply_nested_json_is_a_400(client: TestClient) -> None:
    answer = client.post("/v1/echo", content=b"[" * 500 + b"]" * 500, headers=JSON)
    assert answer.status_code == 400 and "nested deeper than 32" in answer.json()["detail"]


def test_a_body_that_is_not_json_is_a_415(client: TestClient) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"content-type": content_type} if content_type else {}
        answer = client.post("/v1/echo", content=b'{"a": 1}', headers=headers)
        assert answer.status_code == 415 and "application/json" in answer.json()["detail"], content_type


def test_json_and_json_suffix_types_pass_and_the_body_arrives_whole(client: TestClient) -> None:
    assert client.post("/v1/echo", json={"a": [1, 2]}).json() == {"got": {"a": [1, 2]}}
    typed = {"content-type": "application/cloudevents+json; charset=utf-8"}
    assert client.post("/v1/echo", content=b"[1]", headers=typed).json() == {"got": [1]}
    assert client.post("/v1/echo").json() == {"got": None}, "no body, no content type needed"


def test_a_body_over_the_limit_is_a_413(client: TestClient) -> None:
    answer = client.post("/v1/echo", content=b"[" + b"1," * 600 + b"1]", headers=JSON)
    assert answer.status_code == 413 and "limit of 1000 bytes" in answer.json()["detail"]


def test_a_hostile_pubsub_delivery_is_dropped_not_redelivered(client: TestClient) -> None:
    deep = client.post("/events/pubsub/topic", content=b"[" * 100 + b"]" * 100, headers=JSON)
    assert deep.status_code == 200 and deep.json() == {"status": "DROP"}
    # The sidecar chooses a delivery's content type: the route decides what it can decode.
    plain = client.post("/events/pubsub/topic", content=b"{not json", headers={"content-type": "text/plain"})
    assert plain.json() == {"status": "SUCCESS", "size": 9}


def test_actor_calls_from_the_sidecar_are_left_alone(client: TestClient) -> None:
    assert client.put("/actors/T/1/method/M", content=b"x" * 2000).json() == {"size": 2000}


@pytest.mark.parametrize(
    "number", [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1E+999", b"1" * 400 + b".5"]
)
def test_a_number_that_is_not_finite_is_a_400(client: TestClient, number: bytes) -> None:
    """Python's parser takes NaN/Infinity and overflows 1e400 to inf: a 422 naming it could not render."""
    answer = client.post("/v1/echo", content=b'{"note": ' + number + b"}", headers=JSON)
    assert answer.status_code == 400 and "must be finite" in answer.json()["detail"]
    delivered = client.post("/events/pubsub/topic", content=b"[" + number + b"]", headers=JSON)
    assert delivered.json() == {"status": "DROP"}


def test_finite_numbers_and_look_alikes_in_strings_pass(client: TestClient) -> None:
    body = {"note": "NaN Infinity 1e400", "values": [1e300, -2.5e-308, 10**300], "id": "9c4e1234f0e5000a"}
    assert client.post("/v1/echo", json=body).json() == {"got": body}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        (b'{"traceid": "00-4e123f-01", "v": [1.5, 2e10]}', None),  # an exponent-like id, numbers finite
        (b'{"traceid": "00-4e123f-01", "v": [1.5, 2e400]}', "2e400"),
        (b'{"note": "NaN", "v": NaN}', "NaN"),
        (b'{"v": 1' + b"0" * 400 + b"}", None),  # a big integer is an int, not an overflowed float
    ],
)
def test_non_finite_number_names_the_number_or_none(body: bytes, named: str | None) -> None:
    assert non_finite_number(body) == named


def test_delete_bodies_are_checked_too(client: TestClient) -> None:
    """A DELETE carrying a body (a retire's note) gets the same checks: 415, deep nesting, finite numbers."""
    plain = client.request(
        "DELETE", "/v1/thing", content=b'{"note": "x"}', headers={"content-type": "text/plain"}
    )
    assert plain.status_code == 415
    deep = client.request("DELETE", "/v1/thing", content=b"[" * 400 + b"]" * 400, headers=JSON)
    assert deep.status_code == 400 and "nested deeper" in deep.json()["detail"]
    assert client.request("DELETE", "/v1/thing", content=b"[NaN]", headers=JSON).status_code == 400
    assert client.request("DELETE", "/v1/thing", json={"note": "x"}).json() == {"got": {"note": "x"}}
    assert client.delete("/v1/thing").json() == {"got": None}, "no body, no content type needed"
