"""What the `retrain-schedule` input binding's fires do, for every profile's model: retrain when enough
new data arrived (by the model kind's rule), measure the champion's feature drift, and (if configured)
retrain on high drift as soon as one new piece of data arrived.

A fire reads the archive once and considers each profile that has a model in the registry or readings
in the archive. What counts as new data is the kind's (`KindData.evidence_keys`, not seen by the newest
version): `rul` runs to failure, `failure` failures (lives a failure event ended), `anomaly` lives with
a healthy early life (two windows of readings); each kind has its own threshold (`SchedulePolicy`).
The jobs one fire starts queue behind each other (one job runs at a time, service.py), the configured
profile's first; a profile with a job queued or running gets no second one, here or on another
training replica (a job takes its profile's claim before it starts: leases.py).

The binding (bindings.cron, e.g. nightly) only says "now"; the decision is here, so a fire that finds
nothing to do costs one read of the archive. Fires are not serialised by Dapr: one still being handled
makes the next one a no-op.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from apps.common.profiles import EquipmentProfile, ModelKind
from apps.training.champions import ChampionConflict, ModelCatalog
from apps.training.history import Life
from apps.training.jobs import TrainingJob, TrainRequest, Trigger
from apps.training.service import TRAINERS, NoNewData, TrainingService

log = logging.getLogger("training")

# What each kind counts as new data, in the fire's answer and the log.
EVIDENCE: Final[dict[ModelKind, str]] = {
    "rul": "runs to failure",
    "failure": "failures",
    "anomaly": "lives with a healthy early life",
}


@dataclass(frozen=True, slots=True)
class SchedulePolicy:
    min_new_runs: int  # `rul`: runs to failure the newest version has not seen before a job is worth it
    drift_recent_readings: int  # per running machine, the readings drift is measured over
    drift_retrain_psi: float | None  # a feature's PSI at or over this starts a job; None: never
    min_new_failures: int = 5  # `failure`: failures (lives a failure ended) not seen
    min_new_lives: int = 5  # `anomaly`: lives with a healthy early life not seen

    def needs(self, kind: ModelKind) -> int:
        return {"rul": self.min_new_runs, "failure": self.min_new_failures, "anomaly": self.min_new_lives}[
            kind
        ]


def retrain_trigger(
    new: int, needed: int, max_psi: float | None, drift_psi: float | None
) -> tuple[Trigger | None, str | None]:
    """(the job's trigger or None, why not when drift alone asked). Enough new data: `schedule`. High
    drift lowers the bar to one new piece of data (retraining on what the champion already learnt from
    cannot follow a drift): `drift`."""
    if new >= needed:
        return "schedule", None
    if max_psi is not None and drift_psi is not None and max_psi >= drift_psi:
        return ("drift", None) if new else (None, "high drift, but no new data to learn from")
    return None, None


class RetrainSchedule:
    def __init__(
        self,
        service: TrainingService,
        catalog: ModelCatalog,
        profiles: Sequence[EquipmentProfile],
        policy: SchedulePolicy,
        start: Callable[[TrainingJob], Awaitable[str | None]],
    ) -> None:
        """`profiles`: every profile a fire considers, the configured one first (its job queues first)."""
        self.service = service
        self.catalog = catalog
        self.profiles = list(profiles)
        self.policy = policy
        # runs a job in the background (the app keeps its task) once this replica holds its profile's
        # claim; else says why not (another replica runs one)
        self.start = start
        self._checking = False

    async def tick(self) -> dict[str, Any]:
        """One fire: per model, what was found and what was started (the binding ignores the answer;
        logs keep it)."""
        if self._checking:
            return {"skipped": "the previous fire is still being handled"}
        self._checking = True
        try:
            return await self._tick()
        finally:
            self._checking = False

    async def _tick(self) -> dict[str, Any]:
        try:
            lives = await self.service.read_lives()
        except NoNewData as exc:
            return {"skipped": str(exc)}
        models: dict[str, Any] = {}
        for profile in self.profiles:
            has_model = bool(await self.catalog.registry.versions(profile.model_name))
            if has_model or any(life.readings.profile == profile.name for life in lives):
                models[profile.model_name] = await self._consider(profile, lives)
        return {"models": models}

    async def _consider(self, profile: EquipmentProfile, lives: list[Life]) -> dict[str, Any]:
        name, kind = profile.model_name, profile.model_kind
        out: dict[str, Any] = {"profile": profile.name, "kind": kind, "new_data": EVIDENCE[kind]}
        out |= {"found": 0, "new": 0, "needs": self.policy.needs(kind), "job": None}
        try:
            data = await asyncio.to_thread(TRAINERS[kind].archive, lives, profile)
        except (NoNewData, ValueError) as exc:  # nothing of the kind to learn from: drift may still be
            data, out["data"] = None, str(exc)
        if data is not None:
            evidence = data.evidence_keys
            fresh = await self.service.unseen(profile, set(evidence), data.fingerprint, since_latest=True)
            out["found"], out["new"] = len(evidence), len(fresh)
        try:
            report = await self.catalog.compute_drift(name, lives, self.policy.drift_recent_readings)
            out["drift"] = {"max_psi": report.max_psi, "level": report.level, "source": report.source}
        except ChampionConflict as exc:
            out["drift"], report = str(exc), None
        max_psi = None if report is None else report.max_psi
        trigger, why_not = retrain_trigger(out["new"], out["needs"], max_psi, self.policy.drift_retrain_psi)
        if why_not:
            out["job"] = why_not
        elif trigger is not None and self.service.active(profile.name):
            out["job"] = f"a {profile.name} job is already queued or running"
        elif trigger is not None:
            job = TrainingJob(trigger=trigger, request=TrainRequest(profile=profile.name))
            refused = await self.start(job)
            out["job"] = refused or job.id
            if refused:
                return out
            log.info("retrain schedule: %s job %s for %s (%d new %s)", trigger, job.id, name, out["new"],
                     EVIDENCE[kind])  # fmt: skip
        return out
