"""Configuration of the archiver service, from environment variables (prefix VIGIL_ARCHIVER_)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ArchiverSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_ARCHIVER_")

    port: int = Field(8007, validation_alias="APP_PORT")
    # Loopback on a laptop, where only the app's own sidecar calls it; a container sets 0.0.0.0 so
    # kubelet probes and the Service reach the app on the pod address.
    host: str = Field("127.0.0.1", validation_alias="VIGIL_HOST")
    # How often staged readings are checked for a flush.
    check_seconds: float = Field(2.0, gt=0)
    # A shard is written out when its oldest staged message is this old, or it holds this many readings
    # (whichever first): bigger chunks, or fresher archive. At 1,000 machines x 1 reading/s, 60 s
    # makes chunks of 60 readings per machine and keeps the staging area under ~60,000 readings.
    max_delay_seconds: float = Field(60.0, gt=0)
    flush_readings: int = Field(50_000, ge=1)
    # Staged messages read and written in one round: bounds the archiver's memory after a long outage.
    max_messages_per_flush: int = Field(500, ge=1)
    # readings-accepted is subscribed in bulk (bulkSubscribe): up to this many messages per delivery,
    # or what arrived within this many ms of the first; each is staged as before, concurrently.
    bulk_max_messages: int = Field(100, ge=1, le=1000)
    bulk_max_await_ms: int = Field(50, ge=1, le=10_000)
    # Chunk writes through the binding in flight at once.
    write_concurrency: int = Field(8, ge=1)


@lru_cache
def get_settings() -> ArchiverSettings:
    return ArchiverSettings()
