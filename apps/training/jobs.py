"""A training job's request (the strict body of `POST /v1/train`) and its record (`GET /v1/jobs/{id}`),
and the pure rules of the job log the state store keeps (jobstore.py): which records are kept, and what
becomes of a job the app was running when it stopped."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# TrainRequest is a contract (apps.common.contracts): the gateway passes it on, checked as training would.
from apps.common.contracts import ModelCard, TrainRequest
from apps.training.promotion import GateResult

JobStatus = Literal["queued", "running", "succeeded", "failed", "no_new_data"]
Trigger = Literal["api", "schedule", "drift", "startup", "cli"]
DATASETS = ("FD001", "FD002")  # the C-MAPSS files data/cmapss/ ships (train, test, RUL)
ACTIVE: tuple[JobStatus, ...] = ("queued", "running")
INTERRUPTED = (
    "interrupted by a restart of the training app (it was {status} at {stage}, and {owner} stopped "
    "renewing its lease): nothing was registered after its last saved stage; start it again with "
    "POST /v1/train"
)
__all__ = [
    "ACTIVE",
    "DATASETS",
    "JobStatus",
    "JobSummary",
    "TrainRequest",
    "TrainingJob",
    "Trigger",
    "interrupted",
    "keep_newest",
    "renew",
]


class TrainingJob(BaseModel):
    """One job, as `GET /v1/jobs/{id}` shows it (kept in the state store: jobstore.py)."""

    model_config = ConfigDict(protected_namespaces=())

    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    status: JobStatus = "queued"
    trigger: Trigger = "api"
    request: TrainRequest = Field(default_factory=TrainRequest)
    profile: str = ""
    model_name: str = ""
    stage: str = ""
    progress: float = 0.0
    message: str | None = Field(None, description="Why a job stopped without training, or what it did.")
    runs: int | None = Field(None, description="Labelled runs to failure found (fitted + held out).")
    new_runs: int | None = Field(None, description="Of those, runs the champion was not trained on.")
    held_out_runs: int | None = None
    skipped: list[str] = Field(default_factory=list, description="Runs left out, with the reason.")
    card: ModelCard | None = None
    promoted: bool | None = None
    gate: GateResult | None = None
    error: str | None = None
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None
    owner: str | None = Field(None, description="The training replica that runs (or ran) the job.")
    lease_until: datetime | None = Field(
        None,
        description="Its owner renews this while the job is queued or running; once past, any replica "
        "takes the job as interrupted.",
    )

    def report(self, stage: str, fraction: float) -> None:
        self.stage, self.progress = stage, round(fraction, 3)

    def finish(self, status: JobStatus, **fields: Any) -> None:
        for key, value in fields.items():
            setattr(self, key, value)
        self.status, self.finished_at = status, datetime.now(UTC)
        if status in ("succeeded", "no_new_data"):
            self.progress = 1.0


class JobSummary(BaseModel):
    """A job as `GET /v1/jobs` lists it: all of it but its model card (about 40 KB, which a hundred jobs
    would take past the 4 MB a Dapr call carries; `version` and `metrics` stand for it) and the runs it
    left out (counted in `skipped_runs`). `GET /v1/jobs/{id}` has both."""

    model_config = ConfigDict(protected_namespaces=())

    id: str
    status: JobStatus
    trigger: Trigger
    request: TrainRequest
    profile: str
    model_name: str
    stage: str
    progress: float
    message: str | None
    runs: int | None
    new_runs: int | None
    held_out_runs: int | None
    skipped_runs: int
    version: int | None = Field(description="The version the job registered.")
    metrics: dict[str, float] | None = Field(description="Its numbers on the held-out runs.")
    promoted: bool | None
    gate: GateResult | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    owner: str | None

    @classmethod
    def of(cls, job: TrainingJob) -> JobSummary:
        fields = job.model_dump(exclude={"card", "skipped"})
        card = job.card
        return cls(
            **fields,
            skipped_runs=len(job.skipped),
            version=None if card is None else card.version,
            metrics=None if card is None else card.metrics,
        )


def interrupted(job: TrainingJob, now: datetime) -> TrainingJob | None:
    """What a job read back from the store becomes: a queued or running one whose lease has expired
    was its owner's, which stopped (or lost the store) and runs it no more, so it is failed, saying so
    (None: a finished job, or one whose owner still renews its lease: left as it is). Not resumed: a
    fit cannot continue from a saved stage, and starting it again unasked could train twice what the
    operator already started again. A job from before leases (no `lease_until`) has none to renew."""
    if job.status not in ACTIVE or (job.lease_until is not None and job.lease_until > now):
        return None
    stage = repr(job.stage) if job.stage else "its start"
    owner = f"replica {job.owner}" if job.owner else "its replica"
    message = INTERRUPTED.format(status=job.status, stage=stage, owner=owner)
    return job.model_copy(
        update={"status": "failed", "error": message, "message": message, "finished_at": now}
    )


def renew(job: TrainingJob, owner: str, now: datetime, seconds: float) -> bool:
    """Make `owner` hold the job's lease until `seconds` from now, if it is not already held with
    more than two thirds of that left (so a lease is written about every third of its length); True
    when the lease changed (the record is to be written)."""
    if job.owner == owner and job.lease_until is not None:
        if (job.lease_until - now).total_seconds() > seconds * 2 / 3:
            return False
    job.owner, job.lease_until = owner, now + timedelta(seconds=seconds)
    return True


def keep_newest(index: list[str], job_id: str, keep: int) -> tuple[list[str], list[str]]:
    """The job log's index (ids, newest first) with `job_id` added in front, and the ids that fall off
    its end past `keep` (their records are deleted with the index write)."""
    if keep < 1:
        raise ValueError(f"keep must be at least 1, got {keep}")
    ids = [job_id, *(i for i in index if i != job_id)]
    return ids[:keep], ids[keep:]
