"""The training job without HTTP: train on FD001, register the version, promote it only if it wins."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from apps.common import cmapss
from apps.common.contracts import ModelCard
from apps.common.names import TOPIC_MODEL_UPDATES
from apps.common.profiles import EquipmentProfile
from apps.common.publisher import Publisher
from apps.common.registry import DaprModelRegistry, ModelUpdate, RegisteredModel
from apps.training.trainer import run_training

log = logging.getLogger("training")

# Lower is better for the metric that decides promotion.
PROMOTION_METRIC = "rmse"

Progress = Callable[[str, float], None]


@dataclass
class TrainingJob:
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    status: Literal["queued", "running", "succeeded", "failed"] = "queued"
    stage: str = ""
    progress: float = 0.0
    card: ModelCard | None = None
    promoted: bool | None = None
    error: str | None = None


def beats(candidate: ModelCard, champion: ModelCard | None) -> bool:
    """Promote when there is no champion, or the candidate's test RMSE is strictly lower."""
    if champion is None:
        return True
    return candidate.metrics[PROMOTION_METRIC] < champion.metrics.get(PROMOTION_METRIC, float("inf"))


class TrainingService:
    def __init__(
        self,
        registry: DaprModelRegistry,
        publisher: Publisher,
        profile: EquipmentProfile,
        params: dict[str, int | float | str] | None = None,
    ) -> None:
        self.registry = registry
        self.publisher = publisher
        self.profile = profile
        self.params = params or {}
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

    async def run(self, job: TrainingJob | None = None, progress: Progress | None = None) -> TrainingJob:
        """Train, register, maybe promote, announce. One job at a time (training is CPU-bound)."""
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
                outcome = await asyncio.to_thread(
                    run_training,
                    profile=self.profile,
                    train_units=cmapss.load_train(),
                    test_units=cmapss.load_test(),
                    true_rul=cmapss.load_rul(),
                    version=version,
                    name=name,
                    params=self.params,
                    progress=report,
                )
                await self.registry.register(outcome.card, outcome.onnx_bytes)
                champion_version = await self.registry.champion_version(name)
                champion = (
                    None if champion_version is None else await self.registry.card(name, champion_version)
                )
                job.promoted = beats(outcome.card, champion)
                if job.promoted:
                    await self.registry.promote(name, version)
                await self.publisher.publish(
                    TOPIC_MODEL_UPDATES, ModelUpdate(name=name, version=version, promoted=job.promoted)
                )
                job.card = outcome.card
                job.status = "succeeded"
                log.info(
                    "%s v%d registered (%s), promoted: %s",
                    name,
                    version,
                    ", ".join(f"{k}={v:.3g}" for k, v in outcome.card.metrics.items()),
                    job.promoted,
                )
            except Exception as exc:
                job.status, job.error = "failed", f"{type(exc).__name__}: {exc}"
                log.exception("training job %s failed", job.id)
        return job
