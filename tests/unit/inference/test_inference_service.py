"""The inference service without a sidecar: a tiny LightGBM model exported to ONNX as training exports
it, served from an in-memory registry. Checks ONNX output against LightGBM, micro-batching, hot swap,
the served card (its feature spec) and the 409 / 422 / 503 answers of the HTTP adapter.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from apps.common.contracts import ModelCard, PredictRequest, PredictResponse
from apps.common.features import FeatureSpec
from apps.common.registry import ModelVersion
from apps.inference import app as inference_app
from apps.inference.model import BadInput, ModelChanged, ModelNotReady
from apps.inference.service import InferenceService
from apps.inference.settings import InferenceSettings
from apps.training.quality import export_lightgbm, float32_thresholds, lightgbm

MODEL = "tiny-rul"
FEATURES = [f"f{i}" for i in range(6)]


class InMemoryRegistry:
    """The ModelRegistry protocol over dicts (what DaprModelRegistry keeps in the state store)."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, int], ModelVersion] = {}
        self.champions: dict[str, int] = {}

    async def register(self, card: ModelCard, onnx: bytes) -> int:
        self.versions[(card.name, card.version)] = ModelVersion(card, onnx)
        return card.version

    async def promote(self, name: str, version: int) -> None:
        self.champions[name] = version

    async def champion_version(self, name: str) -> int | None:
        return self.champions.get(name)

    async def get(self, name: str, version: int) -> ModelVersion | None:
        return self.versions.get((name, version))

    async def card(self, name: str, version: int) -> ModelCard | None:
        found = self.versions.get((name, version))
        return found.card if found else None


def fit(seed: int) -> tuple[Any, bytes]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(300, len(FEATURES))).astype(np.float32).astype(np.float64)
    y = 100 + 30 * X[:, 0] - 10 * X[:, 1] + rng.normal(scale=2, size=300)
    model = lightgbm({"n_estimators": 30, "num_leaves": 7, "min_child_samples": 5, "random_state": seed})
    model.fit(X, y)
    float32_thresholds(model)
    return model, export_lightgbm(model, len(FEATURES))


def card(version: int, onnx: bytes) -> ModelCard:
    return ModelCard(
        name=MODEL,
        version=version,
        created_at=datetime.now(UTC),
        profile="turbofan",
        feature_names=FEATURES,
        metrics={"rmse": 1.0},
        training_data_fingerprint="0" * 64,
        rul_cap=125,
        n_train_rows=300,
        n_train_units=1,
        onnx_sha256=hashlib.sha256(onnx).hexdigest(),
        features=FeatureSpec(window=10 + version),
    )


@pytest.fixture(scope="module")
def models() -> dict[int, tuple[Any, bytes]]:
    return {1: fit(1), 2: fit(2)}


def settings() -> InferenceSettings:
    return InferenceSettings(model_names=[MODEL], max_batch_rows=512, max_wait_ms=20)


def request(rows: np.ndarray, names: list[str] | None = None) -> PredictRequest:
    return PredictRequest(model_name=MODEL, feature_names=names or FEATURES, rows=rows.tolist())


async def serving(
    models: dict[int, tuple[Any, bytes]], *versions: int
) -> tuple[InferenceService, InMemoryRegistry]:
    registry = InMemoryRegistry()
    for v in versions:
        await registry.register(card(v, models[v][1]), models[v][1])
    if versions:
        await registry.promote(MODEL, versions[0])
    service = InferenceService(registry, settings())
    await service.refresh_all()
    return service, registry


ROWS = np.random.default_rng(7).normal(size=(40, len(FEATURES))).astype(np.float32)


async def test_no_model_yet_says_to_train_one_and_unknown_name_is_bad_input(models: dict) -> None:
    service, _ = await serving(models)
    assert not service.ready
    with pytest.raises(ModelNotReady, match="vigil train"):
        await service.predict(request(ROWS[:1]))
    with pytest.raises(BadInput, match="unknown model_name 'other'"):
        await service.predict(PredictRequest(model_name="other", feature_names=FEATURES, rows=[[0.0] * 6]))


async def test_onnx_predictions_equal_scikit_learn_and_name_the_version(models: dict) -> None:
    service, _ = await serving(models, 1)
    assert service.ready and service.loaded() == {MODEL: 1}
    response = await service.predict(request(ROWS))
    expected = models[1][0].predict(ROWS)
    got = np.array([p.value for p in response.predictions])
    assert np.max(np.abs(got - expected)) <= 1e-4
    assert {(p.model_name, p.model_version) for p in response.predictions} == {(MODEL, 1)}
    await service.close()


async def test_feature_mismatch_names_what_is_wrong(models: dict) -> None:
    service, _ = await serving(models, 1)
    with pytest.raises(BadInput, match="expects 6 features, got 5"):
        await service.predict(request(ROWS[:2, :5], FEATURES[:5]))
    swapped = [FEATURES[0], FEATURES[2], FEATURES[1], *FEATURES[3:]]
    with pytest.raises(BadInput, match=r"feature_names\[1\] is 'f2' but .* expects 'f1'"):
        await service.predict(request(ROWS[:2], swapped))
    await service.close()


async def test_concurrent_requests_are_coalesced_and_each_gets_its_own_rows(models: dict) -> None:
    service, _ = await serving(models, 1)
    responses = await asyncio.gather(*(service.predict(request(ROWS[i : i + 1])) for i in range(len(ROWS))))
    expected = models[1][0].predict(ROWS)
    for i, response in enumerate(responses):
        assert abs(response.predictions[0].value - expected[i]) <= 1e-4
    batcher = service._serving[MODEL].batcher
    assert batcher.rows == len(ROWS)
    assert batcher.batches < len(ROWS) / 4, f"{batcher.batches} session runs for {len(ROWS)} requests"
    await service.close()


async def test_hot_swap_drops_no_request(models: dict) -> None:
    service, registry = await serving(models, 1, 2)
    stop = asyncio.Event()
    versions_seen: list[int] = []

    async def client() -> None:
        while not stop.is_set():
            response = await service.predict(request(ROWS[:3]))
            versions_seen.append(response.model_version)

    clients = [asyncio.create_task(client()) for _ in range(8)]

    async def answered(n: int) -> None:
        async with asyncio.timeout(10):
            while len(versions_seen) < n:
                failed = [c for c in clients if c.done()]
                if failed:
                    await failed[0]  # re-raises the failed request's error
                await asyncio.sleep(0.005)

    await answered(50)
    await registry.promote(MODEL, 2)
    assert await service.refresh(MODEL)
    await answered(len(versions_seen) + 50)
    stop.set()
    # Any request dropped by the swap would hang (timeout) or raise here.
    await asyncio.wait_for(asyncio.gather(*clients), 10)
    assert versions_seen[0] == 1 and versions_seen[-1] == 2
    assert service.loaded() == {MODEL: 2}
    await service.close()


@pytest.fixture
def http(models: dict) -> Iterator[tuple[TestClient, InMemoryRegistry]]:
    """The FastAPI app without its lifespan (which needs a sidecar), serving an in-memory registry."""
    registry = InMemoryRegistry()
    inference_app.app.state.service = InferenceService(registry, settings())
    yield TestClient(inference_app.app), registry
    del inference_app.app.state.service


def test_http_answers_503_without_a_model_and_422_on_mismatch(http: tuple, models: dict) -> None:
    client, registry = http
    body = {"model_name": MODEL, "feature_names": FEATURES, "rows": ROWS[:2].tolist()}
    no_model = client.post("/v1/predict", json=body)
    assert no_model.status_code == 503 and "vigil train" in no_model.json()["detail"]
    assert client.get("/readyz").status_code == 503

    service: InferenceService = inference_app.app.state.service
    asyncio.run(registry.register(card(1, models[1][1]), models[1][1]))
    asyncio.run(registry.promote(MODEL, 1))
    asyncio.run(service.refresh(MODEL))
    ok = client.post("/v1/predict", json=body)
    assert ok.status_code == 200 and ok.json()["model_version"] == 1
    assert client.get("/readyz").status_code == 200

    wrong = client.post("/v1/predict", json={**body, "feature_names": FEATURES[::-1]})
    assert wrong.status_code == 422 and "feature_names[0]" in wrong.json()["detail"]
    ragged = client.post("/v1/predict", json={**body, "rows": [[1.0, 2.0]]})
    assert ragged.status_code == 422 and "rows[0] has 2 values" in ragged.text


def test_http_body_refusals_name_the_value_and_the_answer_is_the_services(http: tuple, models: dict) -> None:
    """The route parses its body itself (pydantic's JSON parser, not FastAPI's): still FastAPI's 422s,
    located under "body", and a non-finite row named by the model (RequestGuard no longer looks)."""
    client, registry = http
    service: InferenceService = inference_app.app.state.service
    asyncio.run(registry.register(card(1, models[1][1]), models[1][1]))
    asyncio.run(registry.promote(MODEL, 1))
    asyncio.run(service.refresh(MODEL))
    rows = ROWS[:3].tolist()
    ok = client.post("/v1/predict", json={"model_name": MODEL, "feature_names": FEATURES, "rows": rows})
    assert ok.status_code == 200 and ok.headers["content-type"] == "application/json"
    answer = PredictResponse.model_validate_json(ok.content)
    assert (answer.model_name, answer.model_version) == (MODEL, 1)
    got = np.array([p.value for p in answer.predictions])
    assert np.max(np.abs(got - models[1][0].predict(ROWS[:3]))) <= 1e-4

    head = f'{{"model_name": "{MODEL}", "feature_names": {json.dumps(FEATURES)}'
    for raw, where, said in (
        (head + ', "rows": [[1, 2, 3, NaN, 5, 6]]}', "rows", "rows[0][3] is not finite"),
        (head + ', "rows": [[1e400, 2, 3, 4, 5, 6]]}', "rows", "rows[0][0] is not finite"),
        (head + ', "rows": [["1", 2, 3, 4, 5, 6]]}', "rows", "valid number"),
        (head + ', "rows": [[1, 2, 3, 4, 5, 6]], "extra": 1}', "extra", "Extra inputs"),
        ('{"model_name": ', None, "Invalid JSON"),
    ):
        refused = client.post("/v1/predict", content=raw, headers={"content-type": "application/json"})
        assert refused.status_code == 422, raw
        error = refused.json()["detail"][0]
        assert error["loc"][0] == "body" and said in error["msg"], error
        assert where is None or error["loc"][1] == where
    not_utf8 = client.post("/v1/predict", content=b"\x80", headers={"content-type": "application/json"})
    assert not_utf8.status_code == 422 and not_utf8.json()["detail"][0]["type"] == "json_invalid"


async def test_ready_with_one_model_while_another_kind_has_none_yet(models: dict) -> None:
    registry = InMemoryRegistry()
    await registry.register(card(1, models[1][1]), models[1][1])
    await registry.promote(MODEL, 1)
    service = InferenceService(registry, settings().model_copy(update={"model_names": [MODEL, "new-kind"]}))
    await service.refresh_all()
    assert service.ready and service.loaded() == {MODEL: 1}
    with pytest.raises(ModelNotReady, match="'new-kind'"):
        await service.predict(PredictRequest(model_name="new-kind", feature_names=FEATURES, rows=[[0.0] * 6]))
    await service.close()


async def test_rows_computed_for_another_version_are_refused_after_a_hot_swap(models: dict) -> None:
    service, registry = await serving(models, 1, 2)
    assert (
        await service.predict(request(ROWS[:2]).model_copy(update={"model_version": 1}))
    ).model_version == 1
    await registry.promote(MODEL, 2)
    assert await service.refresh(MODEL)
    with pytest.raises(ModelChanged, match="v2 is served"):
        await service.predict(request(ROWS[:2]).model_copy(update={"model_version": 1}))
    assert service.card(MODEL).features == FeatureSpec(window=12)  # what the caller recomputes with
    assert (
        await service.predict(request(ROWS[:2]).model_copy(update={"model_version": 2}))
    ).model_version == 2
    await service.close()


def test_http_serves_the_card_and_answers_409_for_another_version(http: tuple, models: dict) -> None:
    client, registry = http
    assert client.get(f"/v1/models/{MODEL}").status_code == 503
    assert client.get("/v1/models/nope").status_code == 404
    service: InferenceService = inference_app.app.state.service
    asyncio.run(registry.register(card(1, models[1][1]), models[1][1]))
    asyncio.run(registry.promote(MODEL, 1))
    asyncio.run(service.refresh(MODEL))
    served = client.get(f"/v1/models/{MODEL}")
    assert served.status_code == 200
    assert ModelCard.model_validate(served.json()).features == FeatureSpec(window=11)
    body = {"model_name": MODEL, "feature_names": FEATURES, "rows": ROWS[:2].tolist(), "model_version": 3}
    stale = client.post("/v1/predict", json=body)
    assert stale.status_code == 409 and "v1 is served" in stale.json()["detail"]
    assert client.post("/v1/predict", json={**body, "model_version": 1}).status_code == 200
