"""Replay C-MAPSS units through a running platform and read back what the actors predicted, beside the
offline evaluation of the model inference serves (its ONNX fed the shared pipeline with its card's
spec). Used by tests/e2e/test_online_offline.py and bench/bench_models.py --live.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
from dapr.actor import ActorId, ActorProxy
from dapr.aio.clients import DaprClient

from apps.common import cmapss
from apps.common.actor_interface import EquipmentActorInterface
from apps.common.contracts import ModelCard
from apps.common.features import FeatureSpec
from apps.common.names import EQUIPMENT_ACTOR_TYPE, PUBSUB, TOPIC_MODEL_UPDATES
from apps.common.profiles import TURBOFAN
from apps.common.registry import DaprModelRegistry, ModelUpdate, ModelVersion
from apps.common.signing import RecordSigner
from apps.training.quality import unit_features
from apps.training.trainer import onnx_predict
from localdapr.testing import wait_until
from tests.e2e.platform import Platform


def served_card(platform: Platform, name: str = TURBOFAN.model_name) -> ModelCard:
    resp = httpx.get(f"{platform.url('inference')}/v1/models/{name}", timeout=10)
    resp.raise_for_status()
    return ModelCard.model_validate(resp.json())


def champion(platform: Platform, name: str = TURBOFAN.model_name) -> ModelVersion:
    """The champion's ONNX and card, read from the model registry through training's sidecar."""

    async def read() -> ModelVersion:
        async with DaprClient(address=platform.apps["training"].sidecar.grpc_address) as client:
            registry = DaprModelRegistry(client)
            version = await registry.champion_version(name)
            assert version is not None, f"{name} has no champion"
            found = await registry.get(name, version)
            assert found is not None
            return found

    return asyncio.run(read())


def serve(platform: Platform, card: ModelCard, onnx: bytes) -> None:
    """Register a version, make it champion and announce it, as a promotion does; wait until served."""

    async def publish() -> None:
        async with DaprClient(address=platform.apps["training"].sidecar.grpc_address) as client:
            # signed with the platform's key, as training signs: inference serves nothing else
            signer = RecordSigner(platform.apps["training"].env["VIGIL_TRAINING_SIGNING_KEY"])
            registry = DaprModelRegistry(client, signer=signer)
            await registry.register(card, onnx)
            await registry.promote(card.name, card.version)
            update = ModelUpdate(name=card.name, version=card.version, promoted=True)
            await client.publish_event(
                PUBSUB, TOPIC_MODEL_UPDATES, update.model_dump_json(), data_content_type="application/json"
            )

    asyncio.run(publish())

    def serving() -> bool:
        try:
            return served_card(platform, card.name).version == card.version
        except httpx.HTTPError:
            return False

    wait_until(serving, timeout=60, interval=0.5, what=f"inference serving {card.name} v{card.version}")


def replay(
    platform: Platform, units: Mapping[int, np.ndarray], prefix: str, cycles_per_batch: int = 20
) -> None:
    """All units advance together, `cycles_per_batch` cycles per request; every reading accepted."""
    longest = max(len(t) for t in units.values())
    for start in range(0, longest, cycles_per_batch):
        batch = [
            {
                "equipment_id": f"{prefix}{u:03d}",
                "profile": TURBOFAN.name,
                "timestamp": datetime.now(UTC).isoformat(),
                "seq": int(row[1]),
                "values": cmapss.row_values(row),
            }
            for u, traj in units.items()
            for row in traj[start : start + cycles_per_batch]
        ]
        if batch:
            resp = httpx.post(f"{platform.url('ingestion')}/v1/readings", json=batch, timeout=120)
            assert resp.status_code == 200 and resp.json()["accepted"] == len(batch), resp.text


def actor_call(platform: Platform, equipment_id: str, method: str, *args: Any) -> Any:
    """An EquipmentActor method through the equipment app's sidecar."""

    async def call() -> Any:
        proxy = ActorProxy.create(EQUIPMENT_ACTOR_TYPE, ActorId(equipment_id), EquipmentActorInterface)
        return json.loads(await getattr(proxy, method)(*args))

    return asyncio.run(call())


def predicted(
    platform: Platform, units: Mapping[int, np.ndarray], prefix: str
) -> dict[int, list[dict[str, Any]]]:
    """Each machine's predictions (seq, predicted_rul, model_version), once every reading is predicted.
    The caller sets DAPR_HTTP_PORT to the equipment app's sidecar (the SDK's actor proxy reads it)."""

    def done(u: int) -> bool:
        health = actor_call(platform, f"{prefix}{u:03d}", "GetHealth")
        return health["last_seq"] == int(units[u][-1, 1]) and health["predictions_owed"] == 0

    for u in units:
        wait_until(lambda u=u: done(u), timeout=120, interval=0.5, what=f"{prefix}{u:03d} predicted")
    return {u: actor_call(platform, f"{prefix}{u:03d}", "GetHistory", 100_000) for u in units}


def offline(onnx: bytes, spec: FeatureSpec, trajectory: np.ndarray) -> np.ndarray:
    """The offline evaluation's prediction at every reading of one unit (the last one is scored)."""
    return onnx_predict(onnx, unit_features(trajectory, TURBOFAN, spec))
