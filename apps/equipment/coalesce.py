"""Prediction requests of actors calling at the same time, sent to inference together.

Every reading an actor applies owes one prediction, and each actor asked inference for its own: with
one reading per call that was one service invocation per reading (the equipment app's client call,
both sidecars and the inference app's HTTP handling), far more CPU than the model run itself, which
inference already batches (apps/inference/batcher.py). Here the rows of concurrent callers of one
model version and feature list join one request. A call goes out at once while fewer than
`max_in_flight` requests are outstanding, so a lone caller waits no longer than before; only callers
that would otherwise queue behind busy requests are gathered (up to `max_rows` rows a request), and
each gets back exactly its own rows' predictions, in order, or the request's error (a 409 after a
hot swap is every caller's: they all computed their rows for the same version).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

from apps.common.contracts import FeatureVector, ModelCard, PredictResponse
from apps.equipment.ports import InferenceClient, InferenceUnavailable

_Key = tuple[str, int | None, tuple[str, ...]]


@dataclass
class _Batch:
    key: _Key
    features: list[FeatureVector] = field(default_factory=list)
    # Each caller's first row in `features`, its row count, and where its answer goes.
    waiters: list[tuple[int, int, asyncio.Future[PredictResponse]]] = field(default_factory=list)


class CoalescingInference:
    """An `InferenceClient` that sends the rows of concurrent `predict` calls in shared requests."""

    def __init__(self, inner: InferenceClient, max_rows: int = 512, max_in_flight: int = 2) -> None:
        if max_rows < 1 or max_in_flight < 1:
            raise ValueError("max_rows and max_in_flight must be >= 1")
        self.inner = inner
        self.max_rows = max_rows
        self.max_in_flight = max_in_flight
        self.requests = 0  # requests sent to inference (tests and benchmarks compare with calls)
        self._gathering: dict[_Key, _Batch] = {}
        self._full: list[_Batch] = []  # closed at max_rows, waiting for a request slot
        self._in_flight: set[asyncio.Task[None]] = set()

    async def served_card(self, model_name: str) -> ModelCard:
        return await self.inner.served_card(model_name)

    async def predict(
        self, model_name: str, features: list[FeatureVector], model_version: int | None = None
    ) -> PredictResponse:
        if not features or len(features) >= self.max_rows:
            self.requests += 1
            return await self.inner.predict(model_name, features, model_version)
        key = (model_name, model_version, tuple(features[0].feature_names))
        batch = self._gathering.get(key)
        if batch is not None and len(batch.features) + len(features) > self.max_rows:
            self._full.append(self._gathering.pop(key))
            batch = None
        if batch is None:
            batch = self._gathering[key] = _Batch(key)
        done: asyncio.Future[PredictResponse] = asyncio.get_running_loop().create_future()
        batch.waiters.append((len(batch.features), len(features), done))
        batch.features += features
        self._pump()
        return await done

    def _pump(self) -> None:
        """Send waiting batches, oldest first, while request slots are free."""
        while len(self._in_flight) < self.max_in_flight:
            if self._full:
                batch = self._full.pop(0)
            elif self._gathering:
                batch = self._gathering.pop(next(iter(self._gathering)))
            else:
                return
            task = asyncio.create_task(self._send(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._in_flight.discard(task)
        if not task.cancelled():
            self._pump()

    async def _send(self, batch: _Batch) -> None:
        name, version, _ = batch.key
        self.requests += 1
        try:
            response = await self.inner.predict(name, batch.features, version)
            if len(response.predictions) != len(batch.features):
                raise InferenceUnavailable(
                    f"inference answered {len(response.predictions)} predictions for "
                    f"{len(batch.features)} rows"
                )
        except asyncio.CancelledError:
            _fail(batch, InferenceUnavailable("equipment is shutting down"))
            raise
        except Exception as exc:  # ModelChanged, InferenceUnavailable: every caller's answer
            _fail(batch, exc)
            return
        for start, count, done in batch.waiters:
            if not done.done():
                # A slice of a response inference built and validated: nothing to check again.
                done.set_result(
                    PredictResponse.model_construct(
                        predictions=response.predictions[start : start + count],
                        model_name=response.model_name,
                        model_version=response.model_version,
                    )
                )

    async def close(self) -> None:
        """Stop requests in flight; their callers and any still gathering get InferenceUnavailable."""
        waiting = [*self._full, *self._gathering.values()]
        self._full.clear()
        self._gathering.clear()
        for batch in waiting:
            _fail(batch, InferenceUnavailable("equipment is shutting down"))
        for task in list(self._in_flight):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _fail(batch: _Batch, exc: Exception) -> None:
    for _, _, done in batch.waiters:
        if not done.done():
            done.set_exception(exc)
