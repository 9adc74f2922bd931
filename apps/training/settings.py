"""Configuration of the training service, from environment variables (prefix VIGIL_TRAINING_)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TrainingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_TRAINING_")

    port: int = Field(8004, validation_alias="APP_PORT")
    profile: str = "turbofan"
    # Train a first model at start-up when the registry has no champion, so a fresh demo predicts.
    train_if_no_champion: bool = True
    n_estimators: int = Field(200, ge=1)


@lru_cache
def get_settings() -> TrainingSettings:
    return TrainingSettings()
