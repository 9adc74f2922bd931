"""Configuration of the equipment service, from environment variables (prefix VIGIL_EQUIPMENT_)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from apps.common.contracts import MAX_BATCH_READINGS
from apps.equipment.sequence import DEFAULT_MAX_SEQ_JUMP


class EquipmentSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_EQUIPMENT_")

    port: int = Field(8002, validation_alias="APP_PORT")
    # Loopback on a laptop, where only the app's own sidecar calls it; a container sets 0.0.0.0 so
    # kubelet probes and the Service reach the app on the pod address.
    host: str = Field("127.0.0.1", validation_alias="VIGIL_HOST")
    # A HealthSnapshot is published on every status change, and otherwise at most this often.
    health_publish_seconds: float = Field(5.0, ge=0)
    # Health snapshots of concurrent actors are sent together (healthpub.py, one bulk publish): a
    # snapshot waits at most this long for others, and a bulk publish carries at most this many.
    # 0 ms: each snapshot is published on its own.
    health_publish_linger_ms: float = Field(15.0, ge=0, le=1000)
    health_publish_max_batch: int = Field(100, ge=1, le=1000)
    # How often the silence reminder looks at a machine.
    silence_check_seconds: float = Field(30.0, gt=0)
    # Override the profile's silence threshold (seconds without readings); None = the profile's.
    silence_after_seconds: float | None = Field(None, gt=0)
    actor_idle_timeout_seconds: float = Field(3600.0, gt=0)
    # How far a reading's seq may jump ahead of the machine's last one; further is refused `too_far`.
    max_seq_jump: int = Field(DEFAULT_MAX_SEQ_JUMP, ge=1)
    # Prediction requests to inference outstanding at once; the rows of actors calling meanwhile are
    # sent together, up to inference_max_rows a request (coalesce.py).
    inference_in_flight: int = Field(2, ge=1)
    inference_max_rows: int = Field(512, ge=1, le=MAX_BATCH_READINGS)


@lru_cache
def get_settings() -> EquipmentSettings:
    return EquipmentSettings()
