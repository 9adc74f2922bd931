"""The inference service without HTTP: which models are loaded, hot swaps, micro-batched predictions,
and the input counts (inputs.py) written to the state store off the prediction path."""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import numpy as np

from apps.common.contracts import ModelCard, Prediction, PredictRequest, PredictResponse
from apps.common.metrics import record_model_refused, record_predictions, record_serving
from apps.common.registry import InputCounts, ModelRegistry
from apps.common.signing import ForgedRecord
from apps.inference.batcher import MicroBatcher
from apps.inference.inputs import Delta, InputTally
from apps.inference.model import BadInput, ModelChanged, ModelNotReady, OnnxModel
from apps.inference.settings import InferenceSettings

log = logging.getLogger("inference")


@dataclass(slots=True)
class Serving:
    model: OnnxModel
    batcher: MicroBatcher
    inputs: InputTally | None  # None: the card has no training reference to count inputs against


class NoReference(Exception):
    """The served version's card has no training reference, so its inputs are not counted: 404."""


class InputsUnavailable(Exception):
    """The state store holding every replica's input counts did not answer: 503."""


class InputStore(Protocol):
    """Where the replicas' input counts meet (DaprInputStore: `modelstore`, etag-guarded)."""

    async def read(self, model: str, version: int) -> bytes | None: ...

    async def update(
        self, model: str, version: int, change: Callable[[bytes | None], str], ttl_seconds: int
    ) -> None: ...


class InferenceService:
    def __init__(
        self,
        registry: ModelRegistry,
        settings: InferenceSettings,
        unverifiable: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        input_store: InputStore | None = None,
    ) -> None:
        """`unverifiable`: why no record can be verified (no public key): then nothing is served.
        `input_store`: where every replica's input counts are merged (None: this process's alone)."""
        self.registry = registry
        self.settings = settings
        self.clock = clock
        self.input_store = input_store
        self.replica = uuid.uuid4().hex[:12]  # names this process's writes of input counts
        self.unverifiable = unverifiable
        # What was refused per model (a forged or unsigned champion pointer or version): readyz shows it.
        self.refused: dict[str, str] = {}
        self._serving: dict[str, Serving] = {}
        self._lock = asyncio.Lock()
        self._retired: set[asyncio.Task[None]] = set()

    @property
    def ready(self) -> bool:
        """Serving at least one model. Not all of them: a new kind of equipment (a profile file) names a
        model nobody has trained yet, and that must not take the existing ones out of service; a
        request for a model not loaded gets its own 503 (ModelNotReady)."""
        return bool(self._serving)

    def loaded(self) -> dict[str, int]:
        return {name: s.model.version for name, s in self._serving.items()}

    async def refresh(self, name: str, version: int | None = None) -> bool:
        """Load the champion (or `version`) of `name` if it is not what is served; True if it swapped."""
        if self.unverifiable is not None:
            return False
        async with self._lock:
            try:
                return await self._refresh(name, version)
            except ForgedRecord as exc:
                # Keep serving what is loaded: a forged record must not take a good model out of service.
                if self.refused.get(name) != str(exc):
                    serving = self.loaded().get(name)
                    log.error("refused to serve %s: %s (still serving v%s)", name, exc, serving)
                    record_model_refused(name)
                self.refused[name] = str(exc)
                return False

    async def _refresh(self, name: str, version: int | None) -> bool:
        target = version if version is not None else await self.registry.champion_version(name)
        current = self._serving.get(name)
        if target is None or (current is not None and current.model.version == target):
            self.refused.pop(name, None)
            return False
        found = await self.registry.get(name, target)
        if found is None:
            log.warning("model %s v%s is not in the registry", name, target)
            return False
        model = await asyncio.to_thread(OnnxModel, found.card, found.onnx, self.settings.intra_op_threads)
        batcher = MicroBatcher(model.run, self.settings.max_batch_rows, self.settings.max_wait_ms / 1000)
        try:
            inputs = InputTally.of(
                found.card, self.clock(), self.settings.inputs_window_seconds, self.replica
            )
        except ValueError as exc:  # a card whose reference does not fit: served all the same, not counted
            log.warning("%s: inputs not counted: %s", name, exc)
            inputs = None
        # One assignment swaps the model: requests already queued on the old batcher finish on the
        # old session; new requests go to the new one. Nothing is dropped.
        self._serving[name] = Serving(model, batcher, inputs)
        self.refused.pop(name, None)
        record_serving(name, target)
        if current is not None:
            task = asyncio.create_task(self._retire(current))
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)
        log.info(
            "serving %s v%d (%s)",
            name,
            target,
            ", ".join(f"{k}={v:.3g}" for k, v in found.card.metrics.items()),
        )
        return True

    async def _retire(self, old: Serving) -> None:
        await asyncio.sleep(5)  # let requests queued on the old batcher drain
        await old.batcher.close()
        await self._flush(old.inputs)  # its last counts

    async def refresh_all(self) -> None:
        for name in self.settings.model_names:
            try:
                await self.refresh(name)
            except Exception as exc:  # the registry may be briefly unreachable; try again later
                log.warning("could not load model %s: %s", name, exc)

    async def poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.poll_seconds)
            await self.refresh_all()

    def card(self, name: str) -> ModelCard:
        """The card of the version served for `name` (its feature spec is what callers compute)."""
        return self._serving_of(name).model.card

    def _serving_of(self, name: str) -> Serving:
        serving = self._serving.get(name)
        if serving is None:
            if name not in self.settings.model_names:
                raise BadInput(
                    f"unknown model_name {name!r}; served models: {', '.join(self.settings.model_names)}"
                )
            raise ModelNotReady(
                f"no version of model {name!r} is registered yet: train one with `vigil train`"
            )
        return serving

    async def predict(self, request: PredictRequest) -> PredictResponse:
        serving = self._serving_of(request.model_name)
        if request.model_version is not None and request.model_version != serving.model.version:
            raise ModelChanged(
                f"rows computed for {request.model_name} v{request.model_version}, but "
                f"v{serving.model.version} is served: compute them with its feature spec"
            )
        serving.model.check(request.feature_names)
        rows = np.asarray(request.rows, dtype=np.float32)
        out = await serving.batcher.predict(rows)
        if serving.inputs is not None:
            serving.inputs.add(rows, self.clock())  # what the model was fed, for training's drift
        name, version = serving.model.name, serving.model.version
        record_predictions(name, version, len(out))
        return PredictResponse(
            predictions=[Prediction(value=float(v), model_name=name, model_version=version) for v in out],
            model_name=name,
            model_version=version,
        )

    async def inputs(self, name: str) -> InputCounts:
        """The served version's inputs counted in its card's reference bins (training's drift): every
        replica's, as written to the store, with what this one has not written yet."""
        serving = self._serving_of(name)
        tally = serving.inputs
        if tally is None:
            raise NoReference(
                f"{name} v{serving.model.version} has no training reference (feature_reference) in its "
                "card that fits its features: its inputs are not counted"
            )
        stored = None
        if self.input_store is not None:
            try:
                stored = await self.input_store.read(tally.model, tally.version)
            except Exception as exc:
                raise InputsUnavailable(f"the input counts of {name} could not be read: {exc}") from exc
        try:
            return tally.snapshot(self.clock(), stored)
        except ValueError as exc:  # the next write replaces it
            log.warning("%s v%d: unreadable input counts in the store: %s", name, tally.version, exc)
            return tally.snapshot(self.clock())

    async def flush_inputs(self) -> None:
        """Write what each served version was fed since the last write: one etag-guarded write per
        version with new counts (none for a version nobody predicted with)."""
        for serving in list(self._serving.values()):
            await self._flush(serving.inputs)

    async def flush_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.inputs_flush_seconds)
            await self.flush_inputs()

    async def _flush(self, tally: InputTally | None) -> None:
        if tally is None or self.input_store is None:
            return
        delta = tally.take()
        if delta is None:
            return
        try:
            await self.input_store.update(
                tally.model, tally.version, lambda stored: self._merged(tally, stored, delta), self._ttl()
            )
        except Exception as exc:  # kept, and written with the next flush (the same delta: counted once)
            log.warning("%s v%d: input counts not written: %s", tally.model, tally.version, exc)
            return
        tally.written(delta)

    def _merged(self, tally: InputTally, stored: bytes | None, delta: Delta) -> str:
        try:
            return tally.merge_into(stored, delta, self.clock())
        except ValueError as exc:
            log.warning("%s v%d: replacing unreadable input counts: %s", tally.model, tally.version, exc)
            return tally.merge_into(None, delta, self.clock())

    def _ttl(self) -> int:
        """A record outlives the two windows an answer covers, then expires (a version no longer served)."""
        return math.ceil(2 * self.settings.inputs_window_seconds + 2 * self.settings.inputs_flush_seconds)

    async def close(self) -> None:
        for serving in self._serving.values():
            await serving.batcher.close()
        await self.flush_inputs()  # a clean stop loses no count
        for task in list(self._retired):
            task.cancel()
