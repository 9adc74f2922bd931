"""Training's `GET /v1/models`: the registry's versions with their model cards and the champion, read
by DaprModelRegistry.versions (one bulk read) from a fake state API."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from apps.common.contracts import ModelCard
from apps.common.profiles import PROFILES, TURBOFAN
from apps.common.registry import DaprModelRegistry
from apps.training import app as training_app
from apps.training.service import TrainingService


class FakeStateClient:
    """The two state calls DaprModelRegistry.versions and champion_version make, over a dict."""

    def __init__(self, data: dict[str, bytes]) -> None:
        self.data = data
        self.bulk_reads: list[list[str]] = []

    async def get_state(self, store: str, key: str) -> Any:
        return SimpleNamespace(data=self.data.get(key, b""), etag="1" if key in self.data else "")

    async def get_bulk_state(self, store: str, keys: list[str], parallelism: int = 1) -> Any:
        self.bulk_reads.append(list(keys))
        return SimpleNamespace(items=[SimpleNamespace(key=k, data=self.data.get(k, b"")) for k in keys])


class NoPublisher:
    async def publish(self, topic: str, event: Any) -> None:
        raise AssertionError("listing models publishes nothing")


def card(version: int, rmse: float) -> ModelCard:
    digest = hashlib.sha256(str(version).encode()).hexdigest()
    return ModelCard(
        name=TURBOFAN.model_name,
        version=version,
        created_at=datetime(2024, 1, version, tzinfo=UTC),
        profile="turbofan",
        feature_names=["f"],
        metrics={"rmse": rmse},
        training_data_fingerprint=digest,
        rul_cap=125.0,
        n_train_rows=10,
        n_train_units=2,
        onnx_sha256=digest,
    )


@pytest.fixture
def http() -> Iterator[tuple[TestClient, FakeStateClient]]:
    name = TURBOFAN.model_name
    # Versions 1..3 handed out; 2 never registered (its training run failed); 3 is champion.
    state = FakeStateClient(
        {
            f"models/{name}/next-version": b"3",
            f"models/{name}/v/1/card": card(1, 15.0).model_dump_json().encode(),
            f"models/{name}/v/3/card": card(3, 12.5).model_dump_json().encode(),
            f"models/{name}/champion": json.dumps({"version": 3}).encode(),
        }
    )
    registry = DaprModelRegistry(state)  # type: ignore[arg-type]
    training_app.app.state.service = TrainingService(registry, NoPublisher(), TURBOFAN)
    yield TestClient(training_app.app), state


def test_models_lists_registered_versions_and_champion(http: tuple[TestClient, FakeStateClient]) -> None:
    client, state = http
    resp = client.get("/v1/models")
    assert resp.status_code == 200
    listed = {m["name"]: m for m in resp.json()}
    assert set(listed) == {p.model_name for p in PROFILES.values()}  # every profile's model
    model = listed[TURBOFAN.model_name]
    assert model["champion"] == 3
    assert [(v["version"], v["metrics"]["rmse"]) for v in model["versions"]] == [(1, 15.0), (3, 12.5)]
    assert state.bulk_reads == [[f"models/{TURBOFAN.model_name}/v/{v}/card" for v in (1, 2, 3)]]  # one read


def test_empty_registry_lists_the_model_with_no_versions(http: tuple[TestClient, FakeStateClient]) -> None:
    client, state = http
    state.data.clear()
    assert client.get("/v1/models").json() == [
        {"name": name, "champion": None, "versions": [], "drift": None}
        for name in sorted(p.model_name for p in PROFILES.values())
    ]
    assert state.bulk_reads == []
