"""Inference refuses registry records that do not verify: it keeps serving its model, logs and counts the
refusal once, /readyz names it; without a public key it serves nothing (fails closed)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from apps.common.signing import ForgedRecord
from apps.inference import app as inference_app
from apps.inference.service import InferenceService
from tests.unit.inference.test_inference_service import MODEL, InMemoryRegistry, card, fit, settings


class ForgingRegistry(InMemoryRegistry):
    """The in-memory registry whose champion pointer can be made to fail verification."""

    forged: str | None = None

    async def champion_version(self, name: str) -> int | None:
        if self.forged is not None:
            raise ForgedRecord(self.forged)
        return await super().champion_version(name)


@pytest.fixture(scope="module")
def onnx() -> bytes:
    return fit(1)[1]


def refused_count() -> float:
    return REGISTRY.get_sample_value("vigil_model_records_refused_total", {"model": MODEL}) or 0.0


async def test_a_forged_champion_is_refused_and_the_served_model_stays(onnx: bytes) -> None:
    registry = ForgingRegistry()
    await registry.register(card(1, onnx), onnx)
    await registry.promote(MODEL, 1)
    service = InferenceService(registry, settings())
    await service.refresh_all()
    assert service.loaded() == {MODEL: 1}
    before = refused_count()
    registry.forged = "the champion pointer of tiny-rul (v2) is not signed"
    for _ in range(3):  # the poll sees it again and again: logged and counted once
        assert await service.refresh(MODEL) is False
    assert service.loaded() == {MODEL: 1} and service.ready
    assert service.refused == {MODEL: registry.forged}
    assert refused_count() == before + 1
    registry.forged = None  # a signed pointer again: the refusal is over
    await service.refresh(MODEL)
    assert service.refused == {}
    await service.close()


async def test_without_a_public_key_nothing_is_served(onnx: bytes) -> None:
    registry = InMemoryRegistry()
    await registry.register(card(1, onnx), onnx)
    await registry.promote(MODEL, 1)
    service = InferenceService(registry, settings(), unverifiable="no model-signing public key")
    await service.refresh_all()
    assert not service.ready and service.loaded() == {}


def test_readyz_names_the_refusal(onnx: bytes) -> None:
    service: Any = InferenceService(InMemoryRegistry(), settings(), unverifiable="no key")
    service.refused = {MODEL: "the champion pointer of tiny-rul (v2) is not signed"}
    inference_app.app.state.service = service  # no lifespan: no sidecar behind it
    try:
        answer = TestClient(inference_app.app).get("/readyz")
    finally:
        del inference_app.app.state.service
    assert answer.status_code == 503  # serving nothing
    body = answer.json()
    assert body["refused"] == service.refused and body["unverifiable"] == "no key"
