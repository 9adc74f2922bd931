"""Inference's input counts through real localdapr sidecars: two inference services (two replicas),
each behind its own sidecar, share one SQLite `modelstore`; they predict and flush at the same time
(etag conflicts on the one record), each answers every prediction counted once, and a service started
afterwards (a restart: nothing in memory) answers them too, with the counts' start kept."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import numpy as np
import pytest
from dapr.aio.clients import DaprClient

from apps.common.names import INFERENCE_APP_ID, MODEL_STORE
from apps.inference.inputs import InputTally, Record
from apps.inference.inputstore import DaprInputStore, inputs_key
from apps.inference.service import InferenceService
from apps.inference.settings import InferenceSettings
from localdapr.sidecar import SidecarOptions
from localdapr.testing import SidecarThread
from tests.integration.localdapr.components import component, write
from tests.unit.inference.test_inference_service import MODEL, InMemoryRegistry, fit, request
from tests.unit.inference.test_input_counts import TRAIN, referenced

pytestmark = pytest.mark.sidecar

ROWS = TRAIN.astype(np.float32)


@pytest.fixture(scope="module")
def sidecars(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[SidecarThread]]:
    root = tmp_path_factory.mktemp("inputs")
    db = {"connectionString": str(root / "models.db"), "keyPrefix": "name"}
    write(root / "res", "modelstore.yaml", component(MODEL_STORE, "state.sqlite", db))
    started: list[SidecarThread] = []
    try:
        for i in range(2):
            options = SidecarOptions(
                app_id=INFERENCE_APP_ID, resources_paths=[root / "res"], registry_dir=root / f"reg{i}"
            )
            started.append(SidecarThread(options).start())
        yield started
    finally:
        for sidecar in started:
            sidecar.stop()


async def replica(client: DaprClient, onnx: bytes) -> InferenceService:
    registry = InMemoryRegistry()  # the models; the counts go through the sidecar
    await registry.register(referenced(1, onnx), onnx)
    await registry.promote(MODEL, 1)
    settings = InferenceSettings(model_names=[MODEL], max_wait_ms=1)
    service = InferenceService(registry, settings, input_store=DaprInputStore(client))
    await service.refresh_all()
    return service


async def test_two_replicas_and_a_restart_count_every_prediction_once(
    sidecars: list[SidecarThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAPR_HTTP_PORT", str(sidecars[0].http_port))
    onnx = fit(1)[1]
    async with (
        DaprClient(address=sidecars[0].grpc_address) as first,
        DaprClient(address=sidecars[1].grpc_address) as second,
    ):
        one, two = await replica(first, onnx), await replica(second, onnx)
        began = (await one.inputs(MODEL)).since
        sent = 0
        for size in (7, 13, 21, 34):  # each round: both predict, then both write at once
            await asyncio.gather(
                one.predict(request(ROWS[sent : sent + size])),
                two.predict(request(ROWS[sent + size : sent + 2 * size])),
            )
            sent += 2 * size
            await asyncio.gather(one.flush_inputs(), two.flush_inputs())
        await one.predict(request(ROWS[sent : sent + 5]))  # not written yet: only `one` knows them
        assert (await one.inputs(MODEL)).rows == sent + 5
        assert (await two.inputs(MODEL)).rows == sent
        await one.close()  # a clean stop writes them
        await two.close()
        sent += 5

        restarted = await replica(first, onnx)
        counts = await restarted.inputs(MODEL)
        assert counts.rows == sent and counts.since == began
        # the same bins as one tally counting every row in memory
        alone = InputTally.of(referenced(1, onnx), began, InferenceSettings().inputs_window_seconds)
        assert alone is not None
        alone.add(ROWS[:sent], began)
        assert [f.counts for f in counts.features] == [f.counts for f in alone.snapshot(began).features]
        stored = await first.get_state(MODEL_STORE, inputs_key(MODEL, 1))
        assert sum(t.rows for t in Record.from_json(stored.data, alone.shape).windows.values()) == sent
        await restarted.close()
