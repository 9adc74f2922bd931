"""A training job's request (the strict body of `POST /v1/train`) and its record (`GET /v1/jobs/{id}`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# TrainRequest is a contract (apps.common.contracts): the gateway passes it on, checked as training would.
from apps.common.contracts import ModelCard, TrainRequest
from apps.training.promotion import GateResult

JobStatus = Literal["queued", "running", "succeeded", "failed", "no_new_data"]
Trigger = Literal["api", "schedule", "drift", "startup", "cli"]
DATASETS = ("FD001", "FD002")  # the C-MAPSS files data/cmapss/ ships (train, test, RUL)
__all__ = ["DATASETS", "JobStatus", "TrainRequest", "TrainingJob", "Trigger"]


class TrainingJob(BaseModel):
    """One job, as `GET /v1/jobs/{id}` shows it (jobs live in the app's memory)."""

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

    def report(self, stage: str, fraction: float) -> None:
        self.stage, self.progress = stage, round(fraction, 3)

    def finish(self, status: JobStatus, **fields: Any) -> None:
        for key, value in fields.items():
            setattr(self, key, value)
        self.status, self.finished_at = status, datetime.now(UTC)
        if status in ("succeeded", "no_new_data"):
            self.progress = 1.0
