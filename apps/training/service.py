"""The training job without HTTP: train on FD001, register the version, promote it only if it wins.

Every fifth training engine is held out of fitting: the promotion gate scores candidate and champion
on those machines (apps/training/promotion.py), never on the test units.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from apps.common import cmapss
from apps.common.contracts import ModelCard
from apps.common.names import TOPIC_MODEL_UPDATES
from apps.common.profiles import EquipmentProfile
from apps.common.publisher import Publisher
from apps.common.registry import DaprModelRegistry, ModelUpdate, RegisteredModel
from apps.training.promotion import DEFAULT_MARGIN, GateResult, decide
from apps.training.quality import evaluate_onnx, run_training

log = logging.getLogger("training")

HELD_OUT_EVERY = 5  # engines whose id is a multiple of this are the gate's held-out machines

Progress = Callable[[str, float], None]


@dataclass
class TrainingJob:
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    status: Literal["queued", "running", "succeeded", "failed"] = "queued"
    stage: str = ""
    progress: float = 0.0
    card: ModelCard | None = None
    promoted: bool | None = None
    gate: GateResult | None = None
    error: str | None = None


def split_held_out(units: dict[int, np.ndarray]) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """(machines to fit on, machines the gate scores on): fixed by engine id, the same for every job."""
    held = {u: t for u, t in units.items() if u % HELD_OUT_EVERY == 0}
    return {u: t for u, t in units.items() if u not in held}, held


class TrainingService:
    def __init__(
        self,
        registry: DaprModelRegistry,
        publisher: Publisher,
        profile: EquipmentProfile,
        params: dict[str, int | float | str] | None = None,
        margin: float = DEFAULT_MARGIN,
    ) -> None:
        self.registry = registry
        self.publisher = publisher
        self.profile = profile
        self.params = params or {}
        self.margin = margin
        self.jobs: dict[str, TrainingJob] = {}
        self._lock = asyncio.Lock()

    async def models(self, names: list[str]) -> list[RegisteredModel]:
        """The registry's versions (with their model cards) and champion of each model in `names`."""
        return [
            RegisteredModel(
                name=name,
                champion=await self.registry.champion_version(name),
                versions=await self.registry.versions(name),
            )
            for name in names
        ]

    async def has_champion(self) -> bool:
        return await self.registry.champion_version(self.profile.model_name) is not None

    async def _gate(
        self, card: ModelCard, candidate_onnx: bytes, held: dict[int, np.ndarray], force: bool
    ) -> GateResult:
        """Candidate and champion scored on the same held-out machines; the decision is kept."""
        name = self.profile.model_name

        version = card.version

        def metrics(version_card: ModelCard, onnx_bytes: bytes) -> dict[str, float]:
            # each version fed the features of its own card's spec (window, operating conditions)
            return evaluate_onnx(onnx_bytes, version_card, held, self.profile)

        candidate = await asyncio.to_thread(metrics, card, candidate_onnx)
        champion_version = await self.registry.champion_version(name)
        champion = None if champion_version is None else await self.registry.get(name, champion_version)
        champion_metrics = None if champion is None else await asyncio.to_thread(metrics, champion.card, champion.onnx)
        gate = decide(
            version,
            candidate,
            None if champion is None else champion_version,
            champion_metrics,
            margin=self.margin,
            force=force,
        )
        await self.registry.record_decision(name, version, gate.model_dump_json())
        return gate

    async def run(
        self, job: TrainingJob | None = None, progress: Progress | None = None, force: bool = False
    ) -> TrainingJob:
        """Train, register, gate, maybe promote, announce. One job at a time (training is CPU-bound)."""
        job = job or TrainingJob()
        self.jobs[job.id] = job
        name = self.profile.model_name

        def report(stage: str, fraction: float) -> None:
            job.stage, job.progress = stage, fraction
            if progress is not None:
                progress(stage, fraction)

        async with self._lock:
            job.status = "running"
            try:
                version = await self.registry.next_version(name)
                fit_units, held = split_held_out(cmapss.load_train())
                outcome = await asyncio.to_thread(
                    run_training,
                    profile=self.profile,
                    train_units=fit_units,
                    held_out=held,
                    version=version,
                    name=name,
                    params=self.params,
                    progress=report,
                )
                await self.registry.register(outcome.card, outcome.onnx_bytes)
                report("promotion gate: candidate vs champion on held-out machines", 0.97)
                job.gate = await self._gate(outcome.card, outcome.onnx_bytes, held, force)
                job.promoted = job.gate.promoted
                if job.promoted:
                    await self.registry.promote(name, version)
                await self.publisher.publish(
                    TOPIC_MODEL_UPDATES, ModelUpdate(name=name, version=version, promoted=job.promoted)
                )
                job.card = outcome.card
                job.status = "succeeded"
                log.info(
                    "%s v%d registered (%s), promoted: %s (%s)",
                    name,
                    version,
                    ", ".join(f"{k}={v:.3g}" for k, v in outcome.card.metrics.items()),
                    job.promoted,
                    job.gate.reason,
                )
            except Exception as exc:
                job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
                log.exception("training job %s failed", job.id)
        return job
