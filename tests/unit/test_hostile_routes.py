"""Hostile bodies to the apps' own routes (issue 10, "zero 5xx"), in process over the fuzz test's fakes:
numbers that are not finite were a 500 on every route with a body model (the 422 naming one could
not be rendered), and a DELETE's body went unchecked (text/plain reached the route; any nesting did)."""

# ruff: noqa: F811 (the fuzz test's app fixtures are imported, and named as parameters to be used)
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.unit.test_api_fuzz import WithoutLifespan, alerting, archiver, inference, training  # noqa: F401

JSON = {"content-type": "application/json"}
NON_FINITE = [b"NaN", b"Infinity", b"1e400", b"-1e999"]


@pytest.fixture
def gateway() -> Iterator[tuple[TestClient, dict[str, str]]]:
    from apps.gateway.app import app
    from tests.unit.gateway.test_gateway_api import make_env

    env = make_env()
    yield TestClient(app), {**JSON, **env.as_("all")}
    del app.state.gateway


@pytest.mark.parametrize("number", NON_FINITE)
def test_a_non_finite_number_in_an_operator_note_is_a_400(alerting: Any, number: bytes) -> None:
    client = TestClient(WithoutLifespan(alerting))
    for method, path in (("POST", "/v1/alerts/m-1:rul_low:1/ack"), ("DELETE", "/v1/fleet/m-1")):
        answer = client.request(method, path, content=b'{"note": ' + number + b"}", headers=JSON)
        assert answer.status_code == 400 and "finite" in answer.json()["detail"], (method, path)


@pytest.mark.parametrize("number", NON_FINITE)
def test_a_non_finite_number_to_archiver_and_training_is_a_400(
    archiver: Any,
    training: Any,
    number: bytes,
) -> None:
    for app, path in ((archiver, "/v1/archive/flush"), (training, "/v1/train")):
        answer = TestClient(WithoutLifespan(app)).post(
            path, content=b'{"force": ' + number + b"}", headers=JSON
        )
        assert answer.status_code == 400, path
    assert training.state.service.jobs == {}, "no job started"


@pytest.mark.parametrize("number", NON_FINITE)
def test_a_non_finite_number_to_the_gateway_is_a_400(
    gateway: tuple[TestClient, dict[str, str]], number: bytes
) -> None:
    client, headers = gateway
    body = b'{"name": "k", "scopes": ["read"], "x": ' + number + b"}"
    assert client.post("/api/v1/keys", content=body, headers=headers).status_code == 400
    note = b'{"note": ' + number + b"}"
    assert client.request("DELETE", "/api/v1/fleet/m-1", content=note, headers=headers).status_code == 400


def test_a_retire_with_a_text_body_is_a_415(
    alerting: Any, gateway: tuple[TestClient, dict[str, str]]
) -> None:
    plain = {"content-type": "text/plain"}
    answer = TestClient(WithoutLifespan(alerting)).request(
        "DELETE", "/v1/fleet/m-1", content=b"x", headers=plain
    )
    assert answer.status_code == 415
    client, headers = gateway
    through = client.request("DELETE", "/api/v1/fleet/m-1", content=b"x", headers={**headers, **plain})
    assert through.status_code == 415


def test_a_deeply_nested_retire_body_is_a_400(alerting: Any) -> None:
    deep = b"[" * 5000 + b"]" * 5000
    answer = TestClient(WithoutLifespan(alerting)).request(
        "DELETE", "/v1/fleet/m-1", content=deep, headers=JSON
    )
    assert answer.status_code == 400 and "nested deeper" in answer.json()["detail"]


def test_a_1e400_in_a_predict_batch_too_big_to_scan_is_a_422(inference: Any) -> None:
    """RequestGuard looks for 1e400 only in bodies up to 1 MiB; past that, the 422 naming it must render."""
    from apps.common.httpguard import MAX_NUMBER_SCAN_BYTES
    from tests.unit.inference.test_inference_service import FEATURES, MODEL

    cell = "1." + "1" * 60  # long numbers make a batch of 5,000 rows larger than the scanned size
    rows = ", ".join("[" + ", ".join([cell] * len(FEATURES)) + "]" for _ in range(5000))
    body = f'{{"model_name": "{MODEL}", "feature_names": {json.dumps(FEATURES)}, "rows": [{rows}]}}'
    body = body.replace(cell, "1e400", 1).encode()
    assert len(body) > MAX_NUMBER_SCAN_BYTES
    answer = TestClient(WithoutLifespan(inference)).post("/v1/predict", content=body, headers=JSON)
    assert answer.status_code == 422 and "finite" in answer.text
