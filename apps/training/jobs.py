"""A training job's request (the strict body of `POST /v1/train`) and its record (`GET /v1/jobs/{id}`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from apps.common.contracts import ModelCard
from apps.common.profiles import PROFILES
from apps.training.promotion import GateResult

JobStatus = Literal["queued", "running", "succeeded", "failed", "no_new_data"]
Trigger = Literal["api", "schedule", "drift", "startup", "cli"]
DATASETS = ("FD001", "FD002")  # the C-MAPSS files data/cmapss/ ships (train, test, RUL)


class TrainRequest(BaseModel):
    """What to train, from what. Every field is optional (`{}` or no body: the configured profile from
    the archive); an unknown field, profile or a kind the profile does not use is refused with a 422,
    so a typo never starts a training run."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"examples": [{}, {"source": "dataset", "dataset": "FD001", "force": True}]},
    )

    profile: str | None = Field(None, max_length=64, description="Equipment profile (default: configured).")
    kind: Literal["rul", "failure", "anomaly"] | None = Field(
        None, description="The model kind; must be the profile's (jobs train `rul` models so far)."
    )
    source: Literal["archive", "dataset"] = Field(
        "archive",
        description="`archive`: the fleet's runs to failure (readings + failure events); `dataset`: a "
        "C-MAPSS training file shipped in data/cmapss/.",
    )
    dataset: Literal["FD001", "FD002"] = Field("FD001", description="With source `dataset` only.")
    force: bool = Field(
        False,
        description="Train even without new labelled runs, and promote whatever the gate finds.",
    )
    note: str = Field("", max_length=500, description="Why, kept with the job and its decision.")

    @model_validator(mode="after")
    def _coherent(self) -> TrainRequest:
        if self.profile is not None and self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; known: {', '.join(sorted(PROFILES))}")
        own = None if self.profile is None else PROFILES[self.profile].model_kind
        if own is not None and self.kind is not None and self.kind != own:
            raise ValueError(f"profile {self.profile!r} uses a {own!r} model, not {self.kind!r}")
        if (self.kind or own or "rul") != "rul":
            raise ValueError(f"training jobs train 'rul' models so far, not {self.kind or own!r}")
        if self.source == "archive" and "dataset" in self.model_fields_set:
            raise ValueError("'dataset' names a file for source 'dataset'; the archive needs none")
        return self


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
