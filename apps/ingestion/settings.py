"""Configuration of the ingestion service, from environment variables (prefix VIGIL_INGESTION_)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class IngestionSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_INGESTION_")

    port: int = Field(8001, validation_alias="APP_PORT")
    # Loopback on a laptop, where only the app's own sidecar calls it; a container sets 0.0.0.0 so
    # kubelet probes and the Service reach the app on the pod address.
    host: str = Field("127.0.0.1", validation_alias="VIGIL_HOST")
    max_body_bytes: int = Field(8 * 1024 * 1024, gt=0)
    # Actor calls in flight at once for one batch (one call per machine, concurrent across machines).
    max_concurrent_actor_calls: int = Field(32, ge=1)
    # How long the first readings for a machine wait for more, from other requests, to go in the same
    # actor call (readings arriving while that machine's call is in flight join the next one anyway).
    # Each request is answered once its readings are applied; 0 turns the wait off, not the coalescing.
    linger_seconds: float = Field(0.002, ge=0, le=1)
    # How long the readings-accepted message of the archive hand-off gathers the readings of requests
    # finishing meanwhile before it is published (each request is answered once it was). Each message
    # costs a publish, a delivery and a staging write in the archiver: at 2 ms, with one reading per
    # request, nearly every reading was a message of its own (bench_pipeline 1,000 x 1).
    handoff_linger_seconds: float = Field(0.02, ge=0, le=1)
    # Retry-After of a 503 (no reading of the request could be applied, e.g. the equipment app restarts).
    retry_after_seconds: int = Field(1, ge=0)


@lru_cache
def get_settings() -> IngestionSettings:
    return IngestionSettings()
