"""Inference counts what each served version is fed in its card's reference bins: the counts equal the
shares training keeps for the same rows, windows roll over, a hot swap starts the new version from
nothing, and `GET /v1/models/{name}/inputs` answers them (404 without a reference)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from apps.common.contracts import ModelCard
from apps.inference import app as inference_app
from apps.inference.inputs import InputTally
from apps.inference.service import InferenceService, NoReference
from apps.inference.settings import InferenceSettings
from apps.training.drift import reference, shares
from tests.unit.inference.test_inference_service import FEATURES, MODEL, InMemoryRegistry, card, fit, request

T0 = datetime(2026, 11, 30, 0, 0, tzinfo=UTC)
WINDOW = 3600.0
TRAIN = np.random.default_rng(3).normal(size=(500, len(FEATURES))).astype(np.float32).astype(np.float64)


def referenced(version: int, onnx: bytes) -> ModelCard:
    """A card with the training reference training keeps (drift.reference over the training rows)."""
    return card(version, onnx).model_copy(update={"feature_reference": reference(TRAIN, FEATURES)})


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def onnx() -> dict[int, bytes]:
    return {1: fit(1)[1], 2: fit(2)[1]}


def tally(onnx: dict[int, bytes]) -> InputTally:
    made = InputTally.of(referenced(1, onnx[1]), T0, WINDOW)
    assert made is not None
    return made


def test_counted_rows_have_the_shares_training_keeps_for_them(onnx: dict[int, bytes]) -> None:
    counting = tally(onnx)
    counting.add(TRAIN[:200].astype(np.float32), T0)
    counting.add(TRAIN[200:].astype(np.float32), T0 + timedelta(seconds=1))
    counts = counting.snapshot(T0 + timedelta(seconds=2))
    assert (counts.model, counts.version, counts.rows, counts.since) == (MODEL, 1, 500, T0)
    for j, feature in enumerate(counts.features):
        assert feature.name == FEATURES[j] and sum(feature.counts) == 500
        assert [c / 500 for c in feature.counts] == pytest.approx(
            shares(TRAIN[:, j], feature.edges), abs=1e-12
        )


def test_a_reference_in_another_order_with_a_constant_feature_counts_each_in_its_own_bins(
    onnx: dict[int, bytes],
) -> None:
    X = TRAIN.copy()
    X[:, 2] = 3.0  # constant: one edge, two bins
    refs = reference(X, FEATURES)[::-1]  # the card's reference need not follow its feature order
    made = InputTally.of(card(1, onnx[1]).model_copy(update={"feature_reference": refs}), T0, WINDOW)
    assert made is not None and made.columns == list(range(len(FEATURES)))[::-1]
    made.add(X[:300].astype(np.float32), T0)
    made.add(X[300:].astype(np.float32), T0)
    counts = {f.name: f for f in made.snapshot(T0).features}
    assert len(counts["f2"].counts) == 2 and counts["f2"].counts == [500, 0]
    for j, name in enumerate(FEATURES):
        assert [c / 500 for c in counts[name].counts] == pytest.approx(shares(X[:, j], counts[name].edges))


def test_a_value_on_an_edge_falls_in_the_bin_below_as_in_training(onnx: dict[int, bytes]) -> None:
    counting = tally(onnx)
    edge = counting.edges[0][4]
    row = np.zeros((1, len(FEATURES)), dtype=np.float32)
    row[0, 0] = np.float32(edge)
    counting.add(row, T0)
    counts = counting.snapshot(T0).features[0].counts
    expected = int(np.searchsorted(counting.edges[0], np.float64(np.float32(edge)), side="left"))
    assert counts[expected] == 1 and sum(counts) == 1


def test_windows_roll_over_and_an_answer_covers_at_most_two(onnx: dict[int, bytes]) -> None:
    counting = tally(onnx)
    one = TRAIN[:10].astype(np.float32)
    counting.add(one, T0)
    counting.add(one, T0 + timedelta(seconds=WINDOW / 2))
    assert counting.snapshot(T0 + timedelta(seconds=WINDOW - 1)).rows == 20
    later = T0 + timedelta(seconds=WINDOW + 5)
    counting.add(one, later)  # a new window; the first is now the previous one
    both = counting.snapshot(later)
    assert both.rows == 30 and both.since == T0
    third = later + timedelta(seconds=WINDOW)  # windows are aligned on the epoch (T0 is a start)
    assert counting.snapshot(third).rows == 10
    assert counting.snapshot(third).since == T0 + timedelta(seconds=WINDOW)
    idle = third + timedelta(seconds=3 * WINDOW)  # nothing for longer than two windows
    assert counting.snapshot(idle).rows == 0
    assert counting.snapshot(idle).since == T0 + timedelta(seconds=4 * WINDOW)


def test_a_card_without_a_reference_is_not_counted(onnx: dict[int, bytes]) -> None:
    assert InputTally.of(card(1, onnx[1]), T0, WINDOW) is None
    bad = referenced(1, onnx[1])
    refs = [bad.feature_reference[0].model_copy(update={"name": "nope"})]
    with pytest.raises(ValueError, match=r"reference features \['nope'\] are not model inputs"):
        InputTally.of(bad.model_copy(update={"feature_reference": refs}), T0, WINDOW)


async def service_with(
    versions: dict[int, ModelCard], onnx: dict[int, bytes], clock: Clock
) -> InferenceService:
    registry = InMemoryRegistry()
    for v, c in versions.items():
        await registry.register(c, onnx[v])
    await registry.promote(MODEL, min(versions))
    service = InferenceService(registry, InferenceSettings(model_names=[MODEL], max_wait_ms=1), clock=clock)
    await service.refresh_all()
    return service


async def test_predictions_are_counted_per_served_version(onnx: dict[int, bytes]) -> None:
    clock = Clock()
    service = await service_with({1: referenced(1, onnx[1]), 2: referenced(2, onnx[2])}, onnx, clock)
    await service.predict(request(TRAIN[:30].astype(np.float32)))
    await service.predict(request(TRAIN[30:50].astype(np.float32)))
    counts = await service.inputs(MODEL)
    assert counts.version == 1 and counts.rows == 50 and counts.since == T0
    assert all(sum(f.counts) == 50 for f in counts.features)
    clock.now = T0 + timedelta(minutes=5)
    await service.registry.promote(MODEL, 2)  # type: ignore[attr-defined]
    assert await service.refresh(MODEL)
    swapped = await service.inputs(MODEL)
    assert (swapped.version, swapped.rows, swapped.since) == (2, 0, clock.now)  # from nothing
    await service.close()


async def test_a_version_without_a_reference_says_so(onnx: dict[int, bytes]) -> None:
    service = await service_with({1: card(1, onnx[1])}, onnx, Clock())
    await service.predict(request(TRAIN[:5].astype(np.float32)))
    with pytest.raises(NoReference, match="no training reference"):
        await service.inputs(MODEL)
    await service.close()


async def test_a_reference_that_does_not_fit_leaves_the_version_served_but_not_counted(
    onnx: dict[int, bytes],
) -> None:
    bad = referenced(1, onnx[1])
    refs = [bad.feature_reference[0].model_copy(update={"name": "nope"}), *bad.feature_reference[1:]]
    service = await service_with({1: bad.model_copy(update={"feature_reference": refs})}, onnx, Clock())
    answer = await service.predict(request(TRAIN[:5].astype(np.float32)))
    assert answer.model_version == 1 and len(answer.predictions) == 5
    with pytest.raises(NoReference, match="that fits its features"):
        await service.inputs(MODEL)
    await service.close()


@pytest.fixture
def http(onnx: dict[int, bytes]) -> Iterator[Any]:
    service = asyncio.run(service_with({1: referenced(1, onnx[1])}, onnx, Clock()))
    inference_app.app.state.service = service
    yield TestClient(inference_app.app)
    del inference_app.app.state.service


def test_http_answers_the_counts_and_404_for_a_model_it_does_not_serve(http: TestClient) -> None:
    body = {"model_name": MODEL, "feature_names": FEATURES, "rows": TRAIN[:7].tolist()}
    assert http.post("/v1/predict", json=body).status_code == 200
    counts = http.get(f"/v1/models/{MODEL}/inputs")
    assert counts.status_code == 200 and counts.json()["rows"] == 7 and counts.json()["version"] == 1
    assert [f["name"] for f in counts.json()["features"]] == FEATURES
    missing = http.get("/v1/models/nope/inputs")
    assert missing.status_code == 404 and "does not serve a model named 'nope'" in missing.json()["detail"]
