"""Configuration of the training service, from environment variables (prefix VIGIL_TRAINING_)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
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
    n_estimators: int = Field(200, ge=1)


@lru_cache
def get_settings() -> TrainingSettings:
    return TrainingSettings()
