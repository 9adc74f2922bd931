"""What the `retrain-schedule` input binding's fires do: retrain when enough new labelled runs arrived,
measure the champion's feature drift, and (if configured) retrain on high drift as soon as one new
labelled run arrived.

The binding (bindings.cron, e.g. nightly) only says "now"; the decision is here, so a fire that finds
nothing to do costs one read of the archive. Fires are not serialised by Dapr: one still being handled
makes the next one a no-op, and a job already queued or running is never doubled.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from apps.common.profiles import EquipmentProfile
from apps.training.champions import ChampionConflict, ModelCatalog
from apps.training.jobs import TrainingJob, TrainRequest, Trigger
from apps.training.runs import labelled_runs
from apps.training.service import NoNewData, TrainingService

log = logging.getLogger("training")


@dataclass(frozen=True, slots=True)
class SchedulePolicy:
    min_new_runs: int  # labelled runs the champion has not seen before a job is worth starting
    drift_recent_readings: int  # per running machine, the readings drift is measured over
    drift_retrain_psi: float | None  # a feature's PSI at or over this starts a job; None: never


class RetrainSchedule:
    def __init__(
        self,
        service: TrainingService,
        catalog: ModelCatalog,
        profile: EquipmentProfile,
        policy: SchedulePolicy,
        start: Callable[[TrainingJob], None],
    ) -> None:
        self.service = service
        self.catalog = catalog
        self.profile = profile
        self.policy = policy
        self.start = start  # runs a job in the background (the app keeps its task)
        self._checking = False

    async def tick(self) -> dict[str, Any]:
        """One fire: what was found and what was started (the binding ignores the answer; logs keep it)."""
        if self._checking:
            return {"skipped": "the previous fire is still being handled"}
        self._checking = True
        try:
            return await self._tick()
        finally:
            self._checking = False

    async def _tick(self) -> dict[str, Any]:
        name = self.profile.model_name
        try:
            lives = await self.service.read_lives()
        except NoNewData as exc:
            return {"skipped": str(exc)}
        runs = labelled_runs(lives, self.profile)
        fresh = await self.service.new_runs(self.profile, runs, since_latest=True)
        out: dict[str, Any] = {"model": name, "runs": len(runs.keys), "new_runs": len(fresh), "job": None}
        try:
            report = await self.catalog.compute_drift(name, lives, self.policy.drift_recent_readings)
            out["drift"] = {"max_psi": report.max_psi, "level": report.level, "source": report.source}
        except ChampionConflict as exc:
            out["drift"] = str(exc)
            report = None
        trigger: Trigger | None = None
        if len(fresh) >= self.policy.min_new_runs:
            trigger = "schedule"
        elif report is not None and self.policy.drift_retrain_psi is not None:
            # retraining on the data the champion already learnt from cannot follow a drift: high drift
            # lowers the bar to one new labelled run instead
            if report.max_psi >= self.policy.drift_retrain_psi:
                if fresh:
                    trigger = "drift"
                else:
                    out["job"] = "high drift, but no new labelled run to learn from"
        if trigger is not None and self.service.busy:
            out["job"] = "a job is already queued or running"
        elif trigger is not None:
            job = TrainingJob(trigger=trigger, request=TrainRequest(profile=self.profile.name))
            self.start(job)
            out["job"] = job.id
            log.info("retrain schedule: %s job %s (%d new labelled runs)", trigger, job.id, len(fresh))
        return out
