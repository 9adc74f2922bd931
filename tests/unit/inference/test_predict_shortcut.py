"""POST /v1/predict past FastAPI's routing (PostShortcut, apps/common/fastroute.py): for every case the
route handles, the shortcut's answer (status, headers, body) is the routed one, and the one the route
gave before it (FastAPI's 422 for a body that fails PredictRequest, the exception handlers' 503, 422
and 409 for the service's refusals)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi.responses import JSONResponse

from apps.common.fastroute import PostShortcut
from apps.inference import app as inference_app
from apps.inference.service import InferenceService
from tests.unit.inference.test_inference_service import (
    FEATURES,
    MODEL,
    ROWS,
    InMemoryRegistry,
    card,
    fit,
    settings,
)

JSON = {"content-type": "application/json"}
_HEAD = f'{{"model_name": "{MODEL}", "feature_names": {json.dumps(FEATURES)}'


def _request(**fields: Any) -> str:
    return json.dumps({"model_name": MODEL, "feature_names": FEATURES, "rows": ROWS[:2].tolist(), **fields})


def _detail(message: str) -> bytes:
    return bytes(JSONResponse({"detail": message}).body)  # as the app's exception handlers render it


# case: (body, content type, expected status, expected body when it is one sentence, or None)
CASES: dict[str, tuple[str | bytes, str, int, bytes | None]] = {
    "predicted": (_request(), "application/json", 200, None),
    "predicted, with a charset": (_request(), "application/json; charset=utf-8", 200, None),
    "the served version named": (_request(model_version=1), "application/json", 200, None),
    "an integer past 64 bits": (
        _HEAD + ', "rows": [[123456789012345678901234567890, 2, 3, 4, 5, 6]]}',
        "application/json",
        200,
        None,
    ),
    "NaN in a row": (_HEAD + ', "rows": [[1, 2, 3, NaN, 5, 6]]}', "application/json", 422, None),
    "1e400 in a row": (_HEAD + ', "rows": [[1e400, 2, 3, 4, 5, 6]]}', "application/json", 422, None),
    "-Infinity in a row": (_HEAD + ', "rows": [[-Infinity, 2, 3, 4, 5, 6]]}', "application/json", 422, None),
    "a string in a row": (_HEAD + ', "rows": [["1", 2, 3, 4, 5, 6]]}', "application/json", 422, None),
    "a ragged row": (_request(rows=[[1.0, 2.0]]), "application/json", 422, None),
    "an extra field": (_HEAD + ', "rows": [[1, 2, 3, 4, 5, 6]], "extra": 1}', "application/json", 422, None),
    "fields missing": ("{}", "application/json", 422, None),
    "not an object": ("[1, 2]", "application/json", 422, None),
    "bad JSON": ('{"model_name": ', "application/json", 422, None),
    "an empty body": (b"", "application/json", 422, None),
    "bytes that are no text": (b"\x80", "application/json", 422, None),
    "features in another order": (
        _request(feature_names=FEATURES[::-1]),
        "application/json",
        422,
        _detail(f"feature_names[0] is 'f5' but model {MODEL} v1 expects 'f0' there"),
    ),
    "a model not served": (
        _request(model_name="pompe-é"),
        "application/json",
        422,
        _detail(f"unknown model_name 'pompe-é'; served models: {MODEL}"),
    ),
    "rows for another version": (
        _request(model_version=3),
        "application/json",
        409,
        _detail(f"rows computed for {MODEL} v3, but v1 is served: compute them with its feature spec"),
    ),
    "a body that is not JSON": (_request(), "text/plain", 415, None),  # RequestGuard's, before the shortcut
    "JSON nested too deep": ("[" * 40 + "]" * 40, "application/json", 400, None),
}


def _shortcut() -> PostShortcut:
    node: Any = inference_app.app.middleware_stack
    while not isinstance(node, PostShortcut):
        node = node.app
    return node


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The app without its lifespan (it needs a sidecar), serving v1 of the model from memory; one
    event loop for every request (the service's batcher keeps to the loop it started on)."""
    registry = InMemoryRegistry()
    onnx = fit(1)[1]
    await registry.register(card(1, onnx), onnx)
    await registry.promote(MODEL, 1)
    service = InferenceService(registry, settings())
    await service.refresh(MODEL)
    inference_app.app.state.service = service
    transport = httpx.ASGITransport(app=inference_app.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://inference") as http:
        yield http
    del inference_app.app.state.service
    await service.close()


async def _answer(client: httpx.AsyncClient, body: str | bytes, content_type: str) -> tuple[int, list, bytes]:
    response = await client.post(
        inference_app.PREDICT_PATH, content=body, headers={"content-type": content_type}
    )
    return response.status_code, sorted(response.headers.items()), response.content


@pytest.mark.parametrize("case", list(CASES))
async def test_the_shortcut_answers_as_the_route(
    client: httpx.AsyncClient, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    body, content_type, status, sentence = CASES[case]
    await client.get("/healthz")  # the app builds its middleware stack on its first request
    shortcut = _shortcut()
    answered: list[bytes] = []
    answer = shortcut.answer

    async def counted(app: Any, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        answered.append(body)
        return await answer(app, body)

    monkeypatch.setattr(shortcut, "answer", counted)
    by_shortcut = await _answer(client, body, content_type)
    assert len(answered) == (status not in (400, 415))  # the request guard's refusals come first
    monkeypatch.setattr(shortcut, "path", "/not-taken")  # every request routed by FastAPI
    routed = await _answer(client, body, content_type)
    assert len(answered) == (status not in (400, 415))
    assert by_shortcut == routed
    assert by_shortcut[0] == status
    assert dict(by_shortcut[1])["content-type"] == "application/json"
    if sentence is not None:
        assert by_shortcut[2] == sentence
    if status == 422 and sentence is None:  # FastAPI's list of errors, located under "body"
        assert json.loads(by_shortcut[2])["detail"][0]["loc"][0] == "body"


async def test_without_a_model_the_answer_is_503(client: httpx.AsyncClient) -> None:
    inference_app.app.state.service = InferenceService(InMemoryRegistry(), settings())
    answer = await _answer(client, _request(), "application/json")
    assert answer[0] == 503
    assert answer[2] == _detail(
        f"no version of model '{MODEL}' is registered yet: train one with `vigil train`"
    )
    await inference_app.app.state.service.close()


async def test_predictions_are_counted_under_the_route(client: httpx.AsyncClient) -> None:
    def counted(text: str) -> float:
        label = 'vigil_http_requests_total{method="POST",route="/v1/predict",status="200"}'
        return next((float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(label)), 0.0)

    before = counted((await client.get("/metrics")).text)
    assert (await _answer(client, _request(), "application/json"))[0] == 200
    assert counted((await client.get("/metrics")).text) == before + 1


async def test_other_methods_and_paths_go_to_the_app(client: httpx.AsyncClient) -> None:
    assert (await client.get(inference_app.PREDICT_PATH)).status_code == 405  # FastAPI's, as before
    slash = await client.post(f"{inference_app.PREDICT_PATH}/", content=_request(), headers=JSON)
    assert slash.status_code == 307 and slash.headers["location"].endswith(inference_app.PREDICT_PATH)


def test_the_openapi_document_still_declares_the_body_and_answers() -> None:
    operation = inference_app.app.openapi()["paths"][inference_app.PREDICT_PATH]["post"]
    assert operation["requestBody"]["content"]["application/json"]["schema"]["title"] == "PredictRequest"
    assert set(operation["responses"]) == {"200", "409", "422", "503"}
    assert operation.get("parameters") is None
