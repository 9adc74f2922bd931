"""Input counts fleet-wide and durable: each replica's counts are merged into one record in the store,
every prediction counted once (two replicas, a restart, a write retried after it landed), windows
older than an answer dropped from the record, and the service flushing off the prediction path."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
import pytest

from apps.inference.inputs import InputTally, Record, window_of
from apps.inference.service import InferenceService, InputsUnavailable
from apps.inference.settings import InferenceSettings
from tests.unit.inference.test_inference_service import MODEL, InMemoryRegistry, fit, request
from tests.unit.inference.test_input_counts import (
    T0,
    TRAIN,
    WINDOW,
    Clock,
    referenced,
)

ROWS = TRAIN.astype(np.float32)
ONE_ROW = {"rows": 1, "counts": [[1]]}


@pytest.fixture(scope="module")
def onnx() -> bytes:
    return fit(1)[1]


def replica(onnx: bytes, name: str, now: datetime = T0) -> InputTally:
    made = InputTally.of(referenced(1, onnx), now, WINDOW, name)
    assert made is not None
    return made


def write(tally: InputTally, stored: bytes | None, now: datetime = T0) -> bytes:
    """One flush as the service makes it: take, merge into the stored record, mark written."""
    delta = tally.take()
    assert delta is not None
    merged = tally.merge_into(stored, delta, now).encode()
    tally.written(delta)
    return merged


def test_two_replicas_counts_merge_and_either_answers_the_sum(onnx: bytes) -> None:
    a, b = replica(onnx, "a"), replica(onnx, "b")
    a.add(ROWS[:120], T0)
    b.add(ROWS[120:200], T0)
    stored = write(b, write(a, None))
    a.add(ROWS[200:230], T0)  # not written yet: a's answer has it, b's not yet
    assert a.snapshot(T0, stored).rows == 230 and b.snapshot(T0, stored).rows == 200
    whole = replica(onnx, "c").snapshot(T0, write(a, stored))
    assert whole.rows == 230
    assert all(sum(f.counts) == 230 for f in whole.features)
    alone = replica(onnx, "d")
    alone.add(ROWS[:230], T0)
    assert [f.counts for f in whole.features] == [f.counts for f in alone.snapshot(T0).features]


def test_a_restarted_replica_answers_what_was_written_before_and_since_when(onnx: bytes) -> None:
    before = replica(onnx, "a")
    before.add(ROWS[:50], T0)
    stored = write(before, None)
    later = T0 + timedelta(minutes=20)
    after = replica(onnx, "a2", later)  # a new process: a new replica id, nothing in memory
    after.add(ROWS[50:60], later)
    counts = after.snapshot(later, stored)
    assert counts.rows == 60 and counts.since == T0  # the version began being counted before the restart


def test_a_delta_written_twice_is_counted_once(onnx: bytes) -> None:
    a = replica(onnx, "a")
    a.add(ROWS[:40], T0)
    delta = a.take()
    assert delta is not None
    landed = a.merge_into(None, delta, T0).encode()  # the write landed, but its answer was lost
    assert a.take() is delta  # the next flush retries the same delta (same sequence number)...
    again = a.merge_into(landed, delta, T0).encode()
    assert Record.from_json(again, a.shape).windows[window_of(T0, WINDOW)].rows == 40  # ...counted once
    assert a.snapshot(T0, landed).rows == 40  # nor does the answer count it twice meanwhile
    a.written(delta)
    a.add(ROWS[40:45], T0)
    assert a.snapshot(T0, write(a, again)).rows == 45


def test_the_record_keeps_two_windows_and_forgets_idle_replicas(onnx: bytes) -> None:
    a, b = replica(onnx, "a"), replica(onnx, "b")
    b.add(ROWS[:10], T0)
    stored = write(b, None)
    for hours in (1, 2):
        now = T0 + timedelta(hours=hours)
        a.add(ROWS[: 10 * hours], now)
        stored = write(a, stored, now)
    record = Record.from_json(stored, a.shape)
    assert sorted(record.windows) == [window_of(T0, WINDOW) + 1, window_of(T0, WINDOW) + 2]
    assert set(record.applied) == {"a"}  # b wrote nothing for two windows
    assert a.snapshot(T0 + timedelta(hours=2), stored).rows == 30


def test_a_record_of_another_shape_is_refused(onnx: bytes) -> None:
    a = replica(onnx, "a")
    with pytest.raises(ValueError, match="not of shape"):
        Record.from_json(
            json.dumps(
                {"began": T0.isoformat(), "windows": {"1": {"rows": 1, "counts": [[1]]}}, "applied": {}}
            ),
            a.shape,
        )
    with pytest.raises(ValueError, match="not a record"):
        Record.from_json(b"[]", a.shape)


class MemoryInputStore:
    """service.InputStore over a dict, applying each change as the etag-guarded write does."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, int], bytes] = {}
        self.writes = 0
        self.down = False
        self.lose_answers = False

    async def read(self, model: str, version: int) -> bytes | None:
        if self.down:
            raise ConnectionError("the store is away")
        return self.data.get((model, version))

    async def update(
        self, model: str, version: int, change: Callable[[bytes | None], str], ttl_seconds: int
    ) -> None:
        if self.down:
            raise ConnectionError("the store is away")
        assert ttl_seconds >= 2 * WINDOW
        self.data[(model, version)] = change(self.data.get((model, version))).encode()
        self.writes += 1
        if self.lose_answers:
            raise TimeoutError("the answer was lost")


async def service(onnx: bytes, store: MemoryInputStore, clock: Clock) -> InferenceService:
    registry = InMemoryRegistry()
    await registry.register(referenced(1, onnx), onnx)
    await registry.promote(MODEL, 1)
    settings = InferenceSettings(model_names=[MODEL], max_wait_ms=1, inputs_window_seconds=WINDOW)
    made = InferenceService(registry, settings, clock=clock, input_store=store)
    await made.refresh_all()
    return made


async def test_two_inference_services_on_one_store_count_every_prediction_once(onnx: bytes) -> None:
    store, clock = MemoryInputStore(), Clock()
    one, two = await service(onnx, store, clock), await service(onnx, store, clock)
    await one.predict(request(ROWS[:30]))
    await two.predict(request(ROWS[30:50]))
    assert store.writes == 0  # nothing written on the prediction path
    await one.flush_inputs()
    await two.flush_inputs()
    await two.flush_inputs()  # nothing new: no write
    assert store.writes == 2
    assert (await one.inputs(MODEL)).rows == 50 and (await two.inputs(MODEL)).rows == 50

    store.lose_answers = True  # a write lands but one believes it failed: it retries the same delta
    await one.predict(request(ROWS[50:60]))
    await one.flush_inputs()
    store.lose_answers = False
    await one.flush_inputs()
    assert (await two.inputs(MODEL)).rows == 60

    store.down = True
    await two.predict(request(ROWS[60:65]))
    await two.flush_inputs()  # kept in memory for the next flush
    with pytest.raises(InputsUnavailable, match="could not be read"):
        await two.inputs(MODEL)
    store.down = False
    await two.close()  # a clean stop writes what it counted
    restarted = await service(onnx, store, clock)
    assert (await restarted.inputs(MODEL)).rows == 65
    await one.close()
    await restarted.close()
