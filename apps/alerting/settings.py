"""Configuration of the alerting service, from environment variables (prefix VIGIL_ALERTING_)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AlertingSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_ALERTING_")

    port: int = Field(8005, validation_alias="APP_PORT")
    # Loopback on a laptop, where only the app's own sidecar calls it; a container sets 0.0.0.0 so
    # kubelet probes and the Service reach the app on the pod address.
    host: str = Field("127.0.0.1", validation_alias="VIGIL_HOST")
    # Dead letters kept, about: the newest N/DEAD_LETTER_SHARDS (rounded up) of each shard's ring
    # buffer in the state store; older ones are overwritten.
    dead_letter_retention: int = Field(10_000, ge=1, le=1_000_000)
    # Alerts kept in the index, about: each of its shards keeps its share (max_alerts / INDEX_SHARDS);
    # above it, a shard forgets its oldest *cleared* alerts (open ones never).
    max_alerts: int = Field(50_000, ge=1)
    # How long a dead letter's CloudEvent id is remembered to drop redeliveries of the same message.
    dead_letter_dedupe_seconds: int = Field(24 * 3600, ge=1)
    # Optimistic-concurrency retries (etag conflicts with another replica) before giving up -> RETRY.
    max_conflict_retries: int = Field(20, ge=1)
    # Keys per bulk read of the state store.
    bulk_read_chunk: int = Field(500, ge=1)


@lru_cache
def get_settings() -> AlertingSettings:
    return AlertingSettings()
