"""Configuration of the training service, from environment variables (prefix VIGIL_TRAINING_)."""

from __future__ import annotations

import uuid
from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class TrainingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_TRAINING_")

    port: int = Field(8004, validation_alias="APP_PORT")
    # Loopback on a laptop, where only the app's own sidecar calls it; a container sets 0.0.0.0 so
    # kubelet probes and the Service reach the app on the pod address.
    host: str = Field("127.0.0.1", validation_alias="VIGIL_HOST")
    profile: str = "turbofan"
    # Train a first model at start-up when the registry has no champion, so a fresh demo predicts.
    train_if_no_champion: bool = True
    n_estimators: int = Field(500, ge=1)  # LightGBM boosting rounds (apps/training/quality.py)
    # LightGBM models averaged into the RUL model, alike but for their seeds (quality.N_SEEDS): each one
    # costs a full fit, so tests and small machines may fit one.
    n_seeds: int = Field(3, ge=1, le=10)
    # Trees of the other kinds' estimators: the failure classifier's gradient boosting (kind_failure.py,
    # ~20 s on AI4I at 150) and the anomaly model's isolation forest (kind_anomaly.py).
    failure_n_estimators: int = Field(150, ge=1)
    anomaly_n_estimators: int = Field(100, ge=1)
    # The promotion gate: a candidate's capped RMSE on the held-out runs must be this much (relative)
    # below the champion's, and its PHM08 score no worse.
    promotion_margin: float = Field(0.02, ge=0.0, lt=1.0)
    # A fire of the retrain-schedule binding starts a job once this many labelled runs to failure
    # arrived that the newest version was not trained on (the newest: a candidate the gate refused is
    # not trained again on the same runs at every fire).
    retrain_min_new_runs: int = Field(5, ge=1)
    # The same for a `failure` model: failures (lives a failure event ended) the newest version was
    # not trained on; each adds one positive, the only rare rows such a classifier has.
    retrain_min_new_failures: int = Field(5, ge=1)
    # ... and for an `anomaly` model, which needs no labels: lives the newest version was not trained
    # on (new machines, or machines started again after a failure, maintenance or a replacement) with
    # a healthy early life to learn from, at least two windows of readings. A rebuilt or newly added
    # machine's normal is what such a model must learn; more readings of lives it knows add little.
    retrain_min_new_lives: int = Field(5, ge=1)
    # Feature drift is measured over the rows inference predicted with the champion (its counts) when it
    # has at least this many; else over each running machine's last `drift_recent_readings` readings.
    drift_min_inference_rows: int = Field(100, ge=1)
    drift_recent_readings: int = Field(50, ge=1, le=100_000)
    # A feature PSI at or over this starts a job on a schedule fire as soon as one new labelled run
    # arrived (0.25 is the usual "significant shift"); unset: drift is shown, never acted on.
    drift_retrain_psi: float | None = Field(None, gt=0.0)
    # Jobs kept in the state store (and listed by GET /v1/jobs at most); older ones are deleted.
    jobs_kept: int = Field(200, ge=1, le=10_000)
    # A running job's record is written at most this often (its progress changes every boosting round).
    job_save_seconds: float = Field(1.0, gt=0.0, le=60.0)
    # A queued or running job's lease: its replica renews it about every third of this; a job whose
    # lease expired (its replica stopped) is failed as interrupted by whichever replica sweeps first
    # (at start-up and every half lease). Also how long a stopped replica's schedule claim blocks others.
    job_lease_seconds: float = Field(30.0, ge=1.0, le=3600.0)
    # This replica's name on its jobs (owner) and claims; unset: a random one per process.
    replica_id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12], min_length=1, max_length=64)
    # The model-signing private key (base64 of 32 bytes) training signs registry records with, so that
    # inference serves only what training wrote. Unset: read from the modelsigning secret store (the
    # local profiles); Kubernetes sets it from the vigil-model-signing Secret.
    signing_key: SecretStr | None = None


@lru_cache
def get_settings() -> TrainingSettings:
    return TrainingSettings()
