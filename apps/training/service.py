"""Training jobs without HTTP: gather labelled runs, train, register, gate, maybe promote, announce.

A job trains from the fleet's own history (source `archive`: readings and failure events, turned into
runs to failure by history.py and runs.py) or from a C-MAPSS training file (source `dataset`). One run
in five is held out of fitting (runs.is_held_out, fixed per run): the promotion gate scores candidate and
champion on those runs, never on a test set. Each version records the runs it saw, so a later archive
job knows which runs are new; with none (and no `force`) it stops as `no_new_data` without training.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from apps.common.archivestore import ArchiveRead
from apps.common.contracts import ModelCard
from apps.common.features import feature_names
from apps.common.names import TOPIC_MODEL_UPDATES
from apps.common.profiles import EquipmentProfile, ModelKind, get_profile
from apps.common.publisher import Publisher
from apps.common.registry import DaprModelRegistry, DriftReport, ModelUpdate, RegisteredModel
from apps.training.history import Life, fleet_lives
from apps.training.jobs import TrainingJob
from apps.training.kind_anomaly import AnomalyTrainer
from apps.training.kind_failure import FailureTrainer
from apps.training.kind_rul import RulTrainer, split_held_out
from apps.training.kinds import KindData, ModelKindTrainer, NoNewData
from apps.training.promotion import DEFAULT_MARGIN, GateResult, decide
from apps.training.runs import LabelledRuns, new_runs
from apps.training.trainer import fingerprint_units

__all__ = ["NoNewData", "TrainingService", "split_held_out"]

log = logging.getLogger("training")

Progress = Callable[[str, float], None]
# One trainer per model kind: fitting, the held-out evaluation and the gate's rule differ, the job not.
TRAINERS: Mapping[ModelKind, ModelKindTrainer] = {
    t.kind: t for t in (RulTrainer(), FailureTrainer(), AnomalyTrainer())
}


class Archive(Protocol):
    async def read(self) -> ArchiveRead: ...


class TrainingService:
    def __init__(
        self,
        registry: DaprModelRegistry,
        publisher: Publisher,
        profile: EquipmentProfile,
        params: dict[str, int | float | str] | None = None,
        margin: float = DEFAULT_MARGIN,
        archive: Archive | None = None,
        kind_params: Mapping[ModelKind, Mapping[str, Any]] | None = None,
    ) -> None:
        """`params`: the `rul` kind's (LightGBM); `kind_params`: another kind's estimator settings."""
        self.registry = registry
        self.publisher = publisher
        self.profile = profile  # the default one: a request may name another
        self.params = params or {}
        self.kind_params = {"rul": self.params, **(kind_params or {})}
        self.margin = margin
        self.archive = archive
        self.jobs: dict[str, TrainingJob] = {}
        self._lock = asyncio.Lock()

    @property
    def busy(self) -> bool:
        return any(job.status in ("queued", "running") for job in self.jobs.values())

    def active(self, profile: str) -> bool:
        """A job for `profile` is queued or running (a request without one is the default profile's)."""
        return any(
            job.status in ("queued", "running") and (job.request.profile or self.profile.name) == profile
            for job in self.jobs.values()
        )

    async def models(self, names: list[str]) -> list[RegisteredModel]:
        """The registry's versions (with their model cards) and champion of each model in `names`."""
        return [
            RegisteredModel(
                name=name,
                champion=await self.registry.champion_version(name),
                versions=await self.registry.versions(name),
                drift=None
                if (drift := await self.registry.drift(name)) is None
                else DriftReport.model_validate_json(drift),
            )
            for name in names
        ]

    async def has_champion(self) -> bool:
        """A champion inference will serve: its pointer signed with this training's key (a registry from
        before signing, or a forged pointer, gets a new signed champion at start-up)."""
        return await self.registry.signed_champion(self.profile.model_name) is not None

    async def read_lives(self) -> list[Life]:
        if self.archive is None:
            raise NoNewData("this training service has no archive to read")
        found = await self.archive.read()
        return fleet_lives(found.histories, found.events)

    async def new_runs(
        self, profile: EquipmentProfile, runs: LabelledRuns, since_latest: bool = False
    ) -> list[str]:
        """Labelled runs the champion was not trained on (all of them without a champion). With
        `since_latest`: runs the newest version was not trained on, so a candidate the gate refused is
        not trained again, identically, on the same runs at every schedule fire."""
        return await self.unseen(profile, runs.all_keys, fingerprint_units(runs.fit), since_latest)

    async def unseen(
        self, profile: EquipmentProfile, keys: set[str], fingerprint: str, since_latest: bool = False
    ) -> list[str]:
        """The run or life keys the champion (or, `since_latest`, the newest version) did not see."""
        name = profile.model_name
        version = await self.registry.champion_version(name)
        if since_latest:
            versions = await self.registry.versions(name)
            version = versions[-1].version if versions else version
        if version is None:
            return sorted(keys)
        seen = await self.registry.runs(name, version)
        if seen is None:  # trained before versions recorded their runs: same fit data, same fingerprint
            card = await self.registry.card(name, version)
            if card is not None and card.training_data_fingerprint == fingerprint:
                return []
        return new_runs(keys, seen)

    async def _gather(
        self, job: TrainingJob, profile: EquipmentProfile, kind: ModelKindTrainer, report: Progress
    ) -> KindData:
        request = job.request
        if request.source == "dataset":
            data = await asyncio.to_thread(kind.dataset, request, profile)
            job.held_out_runs = data.n_held_out
            data.check_usable()
            return data
        report("reading the archive", 0.0)
        data = kind.archive(await self.read_lives(), profile)
        fresh = await self.unseen(profile, set(data.keys), data.fingerprint)
        job.runs, job.new_runs, job.held_out_runs = len(data.keys), len(fresh), data.n_held_out
        job.skipped = data.skipped
        if not fresh and not request.force:
            raise NoNewData(
                f"no new labelled run since the champion was trained ({len(data.keys)} runs, all seen)"
            )
        data.check_usable()
        return data

    async def _gate(
        self,
        profile: EquipmentProfile,
        kind: ModelKindTrainer,
        card: ModelCard,
        onnx: bytes,
        data: KindData,
        force: bool,
    ) -> GateResult:
        """Candidate and champion scored on the same held-out data, each fed the features of its own
        card's spec; the kind's rule decides, and the decision is kept."""
        name = profile.model_name
        candidate = await asyncio.to_thread(kind.evaluate, onnx, card, data, profile)
        champion_version = await self.registry.champion_version(name)
        champion = None if champion_version is None else await self.registry.get(name, champion_version)
        champion_metrics, incomparable = None, None
        # Each version is fed what its own spec computes (its window statistics may not be the
        # candidate's): only a card whose names are not its spec's cannot be scored.
        if champion is not None and champion.card.feature_names != feature_names(
            profile, champion.card.features
        ):
            incomparable = "its card's feature names are not what its feature spec computes"
        elif champion is not None:
            champion_metrics = await asyncio.to_thread(
                kind.evaluate, champion.onnx, champion.card, data, profile
            )
        elif champion_version is not None:
            incomparable = f"v{champion_version} is not in the registry"
        gate = decide(
            card.version,
            candidate,
            champion_version,
            champion_metrics,
            margin=self.margin,
            force=force,
            incomparable=incomparable,
            rule=kind.rule,
        )
        await self.registry.record_decision(name, card.version, gate.model_dump_json())
        return gate

    async def run(
        self,
        job: TrainingJob | None = None,
        progress: Progress | None = None,
        force: bool | None = None,
    ) -> TrainingJob:
        """Gather, train, register, gate, maybe promote, announce. One job at a time (CPU-bound)."""
        job = job or TrainingJob()
        if force is not None:
            job.request = job.request.model_copy(update={"force": force})
        self.jobs[job.id] = job

        def report(stage: str, fraction: float) -> None:
            job.report(stage, fraction)
            if progress is not None:
                progress(stage, fraction)

        async with self._lock:
            job.status = "running"
            try:
                profile = get_profile(job.request.profile) if job.request.profile else self.profile
                job.profile, job.model_name = profile.name, profile.model_name
                kind = TRAINERS[profile.model_kind]
                data = await self._gather(job, profile, kind, report)
                name = profile.model_name
                version = await self.registry.next_version(name)
                params = self.kind_params.get(profile.model_kind, {})
                card, onnx = await asyncio.to_thread(kind.fit, profile, data, version, params, report)
                await self.registry.register(card, onnx)
                await self.registry.record_runs(name, version, data.keys)
                report("promotion gate: candidate vs champion on held-out data", 0.97)
                gate = await self._gate(profile, kind, card, onnx, data, job.request.force)
                if gate.promoted:
                    previous = await self.registry.champion_version(name)
                    change = {
                        **{"version": version, "previous": previous, "action": "gate", "by": f"job {job.id}"},
                        **{
                            "note": job.request.note,
                            "reason": gate.reason,
                            "at": datetime.now(UTC).isoformat(),
                        },
                    }
                    await self.registry.set_champion(name, version, change)
                await self.publisher.publish(
                    TOPIC_MODEL_UPDATES, ModelUpdate(name=name, version=version, promoted=gate.promoted)
                )
                report("done", 1.0)  # ends the CLI's progress line whatever the kind reported last
                job.finish("succeeded", card=card, gate=gate, promoted=gate.promoted, message=gate.reason)
                log.info(
                    "%s v%d registered (%s), promoted: %s (%s)",
                    name,
                    version,
                    ", ".join(f"{k}={v:.3g}" for k, v in card.metrics.items()),
                    gate.promoted,
                    gate.reason,
                )
            except NoNewData as exc:
                job.finish("no_new_data", message=str(exc))
                log.info("training job %s: %s", job.id, exc)
            except Exception as exc:
                job.finish("failed", error=f"{type(exc).__name__}: {exc}")
                log.exception("training job %s failed", job.id)
        return job
