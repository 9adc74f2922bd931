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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import numpy as np

from apps.common import cmapss
from apps.common.archivestore import ArchiveRead
from apps.common.contracts import ModelCard
from apps.common.names import TOPIC_MODEL_UPDATES
from apps.common.profiles import EquipmentProfile, get_profile
from apps.common.publisher import Publisher
from apps.common.registry import DaprModelRegistry, DriftReport, ModelUpdate, RegisteredModel
from apps.training.drift import reference
from apps.training.history import Life, fleet_lives
from apps.training.jobs import TrainingJob
from apps.training.promotion import DEFAULT_MARGIN, GateResult, decide
from apps.training.quality import evaluate_onnx, run_training
from apps.training.runs import HELD_OUT_EVERY, LabelledRuns, labelled_runs, new_runs
from apps.training.trainer import fingerprint_units

log = logging.getLogger("training")

Progress = Callable[[str, float], None]


class Archive(Protocol):
    async def read(self) -> ArchiveRead: ...


def split_held_out(units: dict[int, np.ndarray]) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """A dataset file's (machines to fit on, machines the gate scores on): by unit number, as runs.py
    splits the same units once imported (fd001-005 ...), so both sources hold out the same engines."""
    held = {u: t for u, t in units.items() if u % HELD_OUT_EVERY == 0}
    return {u: t for u, t in units.items() if u not in held}, held


@dataclass(frozen=True, slots=True)
class TrainingData:
    fit: dict[int, np.ndarray]
    held_out: dict[int, np.ndarray]
    keys: list[str]  # every run the version sees (fitted or scored)


def dataset_data(subset: str) -> TrainingData:
    fit, held = split_held_out(cmapss.load_train(subset))
    keys = [f"{subset.lower()}-{u:03d}#0" for u in sorted({**fit, **held})]  # as `vigil import` names them
    return TrainingData(fit, held, keys)


def archive_data(runs: LabelledRuns) -> TrainingData:
    return TrainingData(runs.fit, runs.held_out, sorted(runs.all_keys))


class NoNewData(Exception):
    """The job has nothing to learn from: it says why and stops."""


class TrainingService:
    def __init__(
        self,
        registry: DaprModelRegistry,
        publisher: Publisher,
        profile: EquipmentProfile,
        params: dict[str, int | float | str] | None = None,
        margin: float = DEFAULT_MARGIN,
        archive: Archive | None = None,
    ) -> None:
        self.registry = registry
        self.publisher = publisher
        self.profile = profile  # the default one: a request may name another
        self.params = params or {}
        self.margin = margin
        self.archive = archive
        self.jobs: dict[str, TrainingJob] = {}
        self._lock = asyncio.Lock()

    @property
    def busy(self) -> bool:
        return any(job.status in ("queued", "running") for job in self.jobs.values())

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
        name = profile.model_name
        version = await self.registry.champion_version(name)
        if since_latest:
            versions = await self.registry.versions(name)
            version = versions[-1].version if versions else version
        if version is None:
            return sorted(runs.all_keys)
        seen = await self.registry.runs(name, version)
        if seen is None:  # trained before versions recorded their runs: same fit data, same fingerprint
            card = await self.registry.card(name, version)
            if card is not None and card.training_data_fingerprint == fingerprint_units(runs.fit):
                return []
        return new_runs(runs.all_keys, seen)

    async def _gather(self, job: TrainingJob, profile: EquipmentProfile, report: Progress) -> TrainingData:
        request = job.request
        if request.source == "dataset":
            if profile.name != "turbofan":
                raise ValueError(f"the C-MAPSS files are turbofan data, not {profile.name!r}")
            return await asyncio.to_thread(dataset_data, request.dataset)
        report("reading the archive", 0.0)
        runs = labelled_runs(await self.read_lives(), profile)
        fresh = await self.new_runs(profile, runs)
        job.runs, job.new_runs, job.held_out_runs = len(runs.keys), len(fresh), len(runs.held_out)
        job.skipped = runs.skipped
        if not runs.keys:
            raise NoNewData(
                f"no {profile.name} run to failure in the archive: record failures with POST "
                "/v1/equipment/{id}/events, or import history with `vigil import`"
            )
        if not fresh and not request.force:
            raise NoNewData(
                f"no new labelled run since the champion was trained ({len(runs.keys)} runs, all seen)"
            )
        if not runs.fit or not runs.held_out:
            raise ValueError(
                f"{len(runs.fit)} runs to fit and {len(runs.held_out)} held out: a job needs both "
                f"(one run in {HELD_OUT_EVERY} is held out for the promotion gate)"
            )
        return archive_data(runs)

    async def _gate(
        self,
        profile: EquipmentProfile,
        card: ModelCard,
        onnx: bytes,
        held: dict[int, np.ndarray],
        force: bool,
    ) -> GateResult:
        """Candidate and champion scored on the same held-out runs; the decision is kept."""
        name = profile.model_name

        def metrics(version_card: ModelCard, onnx_bytes: bytes) -> dict[str, float]:
            # each version fed the features of its own card's spec (window, operating conditions)
            return evaluate_onnx(onnx_bytes, version_card, held, profile)

        candidate = await asyncio.to_thread(metrics, card, onnx)
        champion_version = await self.registry.champion_version(name)
        champion = None if champion_version is None else await self.registry.get(name, champion_version)
        champion_metrics, incomparable = None, None
        if champion is not None and champion.card.feature_names != card.feature_names:
            incomparable = "its features differ from the candidate's"
        elif champion is not None:
            champion_metrics = await asyncio.to_thread(metrics, champion.card, champion.onnx)
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
        )
        await self.registry.record_decision(name, card.version, gate.model_dump_json())
        return gate

    def _fit(
        self, profile: EquipmentProfile, data: TrainingData, version: int, report: Progress
    ) -> tuple[ModelCard, bytes]:
        outcome = run_training(
            profile=profile,
            train_units=data.fit,
            held_out=data.held_out,
            version=version,
            name=profile.model_name,
            params=self.params,
            progress=report,
        )
        # The drift reference: the training rows' distribution of each feature, kept in the card.
        rows = outcome.training_set
        card = outcome.card.model_copy(update={"feature_reference": reference(rows.X, rows.feature_names)})
        return card, outcome.onnx_bytes

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
                data = await self._gather(job, profile, report)
                name = profile.model_name
                version = await self.registry.next_version(name)
                card, onnx = await asyncio.to_thread(self._fit, profile, data, version, report)
                await self.registry.register(card, onnx)
                await self.registry.record_runs(name, version, data.keys)
                report("promotion gate: candidate vs champion on held-out machines", 0.97)
                gate = await self._gate(profile, card, onnx, data.held_out, job.request.force)
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
