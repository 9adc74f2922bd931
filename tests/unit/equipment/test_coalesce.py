"""CoalescingInference: concurrent actors' rows share requests, each caller gets its own answers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from apps.common.contracts import FeatureVector, ModelCard, Prediction, PredictResponse
from apps.equipment.coalesce import CoalescingInference
from apps.equipment.ports import InferenceUnavailable, ModelChanged

NAMES = ["a_mean", "age_cycles"]


def rows(machine: str, *values: float, names: list[str] = NAMES) -> list[FeatureVector]:
    return [
        FeatureVector(
            equipment_id=machine,
            profile="turbofan",
            feature_names=names,
            values=[v, float(i + 1)][: len(names)],
            window_end_seq=i + 1,
            age_cycles=float(i + 1),
        )
        for i, v in enumerate(values)
    ]


class Inference:
    """Answers each row with its first value; holds every request until `release` is set."""

    def __init__(self, fail: Exception | None = None, drop_one: bool = False) -> None:
        self.requests: list[tuple[str, int | None, list[float]]] = []
        self.release = asyncio.Event()
        self.fail = fail
        self.drop_one = drop_one

    async def predict(
        self, model_name: str, features: list[FeatureVector], model_version: int | None = None
    ) -> PredictResponse:
        self.requests.append((model_name, model_version, [f.values[0] for f in features]))
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        answered = features[:-1] if self.drop_one else features
        version = model_version or 1
        return PredictResponse(
            predictions=[
                Prediction(value=f.values[0], model_name=model_name, model_version=version) for f in answered
            ],
            model_name=model_name,
            model_version=version,
        )

    async def served_card(self, model_name: str) -> ModelCard:
        raise AssertionError("not used here")


async def until(condition: Any) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0)


async def test_a_lone_call_goes_out_at_once_with_only_its_rows() -> None:
    inner = Inference()
    client = CoalescingInference(inner, max_in_flight=1)
    call = asyncio.create_task(client.predict("m", rows("e1", 1.0, 2.0), 3))
    await until(lambda: len(inner.requests) == 1)
    assert inner.requests == [("m", 3, [1.0, 2.0])]
    inner.release.set()
    answer = await call
    assert [p.value for p in answer.predictions] == [1.0, 2.0]
    assert answer.model_version == 3


async def test_callers_waiting_for_a_busy_request_share_the_next_one_and_get_their_own_rows() -> None:
    inner = Inference()
    client = CoalescingInference(inner, max_in_flight=1)
    first = asyncio.create_task(client.predict("m", rows("e1", 1.0), 2))
    await until(lambda: len(inner.requests) == 1)
    waiting = [
        asyncio.create_task(client.predict("m", rows("e2", 20.0, 21.0), 2)),
        asyncio.create_task(client.predict("m", rows("e3", 30.0), 2)),
        asyncio.create_task(client.predict("m", rows("e4", 40.0, 41.0, 42.0), 2)),
    ]
    await asyncio.sleep(0)
    assert len(inner.requests) == 1  # gathered while the first is outstanding
    inner.release.set()
    answers = await asyncio.gather(first, *waiting)
    assert inner.requests[1] == ("m", 2, [20.0, 21.0, 30.0, 40.0, 41.0, 42.0])
    assert len(inner.requests) == 2 and client.requests == 2
    assert [[p.value for p in a.predictions] for a in answers] == [
        [1.0],
        [20.0, 21.0],
        [30.0],
        [40.0, 41.0, 42.0],
    ]


async def test_other_versions_and_feature_lists_are_never_mixed() -> None:
    inner = Inference()
    client = CoalescingInference(inner, max_in_flight=1)
    first = asyncio.create_task(client.predict("m", rows("e1", 1.0), 2))
    await until(lambda: len(inner.requests) == 1)
    calls = [
        asyncio.create_task(client.predict("m", rows("e2", 2.0), 2)),
        asyncio.create_task(client.predict("m", rows("e3", 3.0), 3)),
        asyncio.create_task(client.predict("m", rows("e4", 4.0, names=["a_mean"]), 2)),
        asyncio.create_task(client.predict("other", rows("e5", 5.0), 2)),
    ]
    inner.release.set()
    answers = await asyncio.gather(first, *calls)
    assert sorted(inner.requests[1:]) == [
        ("m", 2, [2.0]),
        ("m", 2, [4.0]),
        ("m", 3, [3.0]),
        ("other", 2, [5.0]),
    ]
    assert [a.predictions[0].value for a in answers] == [1.0, 2.0, 3.0, 4.0, 5.0]


async def test_a_request_holds_at_most_max_rows() -> None:
    inner = Inference()
    client = CoalescingInference(inner, max_rows=3, max_in_flight=1)
    first = asyncio.create_task(client.predict("m", rows("e1", 1.0), 1))
    await until(lambda: len(inner.requests) == 1)
    calls = [
        asyncio.create_task(client.predict("m", rows(f"e{i}", float(i), float(i)), 1)) for i in (2, 3, 4)
    ]
    big = asyncio.create_task(client.predict("m", rows("e9", 9.0, 9.0, 9.0), 1))  # alone: max_rows
    inner.release.set()
    await asyncio.gather(first, *calls, big)
    assert all(len(values) <= 3 for _, _, values in inner.requests)
    sent = sorted(v for _, _, values in inner.requests for v in values)
    assert sent == [1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 9.0, 9.0, 9.0]  # every row once


@pytest.mark.parametrize("error", [ModelChanged("v3 is served"), InferenceUnavailable("down")])
async def test_a_failed_request_is_every_callers_failure(error: Exception) -> None:
    inner = Inference(fail=error)
    client = CoalescingInference(inner, max_in_flight=1)
    first = asyncio.create_task(client.predict("m", rows("e1", 1.0), 2))
    await until(lambda: len(inner.requests) == 1)
    others = [asyncio.create_task(client.predict("m", rows(f"e{i}", float(i)), 2)) for i in (2, 3)]
    inner.release.set()
    results = await asyncio.gather(first, *others, return_exceptions=True)
    assert all(isinstance(r, type(error)) for r in results)


async def test_an_answer_short_of_rows_is_unavailable_not_misassigned() -> None:
    inner = Inference(drop_one=True)
    client = CoalescingInference(inner, max_in_flight=1)
    inner.release.set()
    with pytest.raises(InferenceUnavailable, match="1 predictions for 2 rows"):
        await client.predict("m", rows("e1", 1.0, 2.0), 2)


async def test_close_fails_the_callers_still_waiting() -> None:
    inner = Inference()
    client = CoalescingInference(inner, max_in_flight=1)
    first = asyncio.create_task(client.predict("m", rows("e1", 1.0), 2))
    await until(lambda: len(inner.requests) == 1)
    second = asyncio.create_task(client.predict("m", rows("e2", 2.0), 2))
    await asyncio.sleep(0)
    await client.close()
    for call in (first, second):
        with pytest.raises(InferenceUnavailable, match="shutting down"):
            await call
