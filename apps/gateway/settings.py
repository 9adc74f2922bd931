"""Configuration of the gateway, from environment variables (prefix VIGIL_GATEWAY_)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from apps.gateway.keys import Scope
from apps.gateway.quota import NewIdQuota
from apps.gateway.ratelimit import Rate


def _default_rates() -> dict[Scope, Rate]:
    # Per key and route. Ingest: a gateway posting a batch (up to 5,000 readings) a few times a second;
    # the others are people and dashboards.
    return {
        "ingest": Rate(per_second=20, burst=40),
        "read": Rate(per_second=10, burst=50),
        "operate": Rate(per_second=2, burst=10),
        "admin": Rate(per_second=1, burst=5),
    }


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_GATEWAY_")

    port: int = Field(8000, validation_alias="APP_PORT")
    # Loopback on a laptop; a container sets 0.0.0.0 so its Service (the public entry) reaches it.
    host: str = Field("127.0.0.1", validation_alias="VIGIL_HOST")
    # Readings batches (ingestion's own limit); every other body is small.
    max_body_bytes: int = Field(8 * 1024 * 1024, gt=0)
    max_small_body_bytes: int = Field(64 * 1024, gt=0)
    # How long a call to a service may take before the client gets 504; readings get longer (a batch of
    # 5,000 readings fans out to that many actor calls).
    call_timeout_seconds: float = Field(10.0, gt=0)
    readings_timeout_seconds: float = Field(30.0, gt=0)
    # Requests per second and burst, per key and route, by the scope the route needs (JSON in the env:
    # VIGIL_GATEWAY_RATES='{"read": {"per_second": 5, "burst": 20}}').
    rates: dict[Scope, Rate] = Field(default_factory=_default_rates)
    # Machines a key may introduce (equipment ids new to the platform: each one becomes an actor, state
    # and archive folders) per window, per key (VIGIL_GATEWAY_NEW_IDS='{"limit": 100, "window_seconds": 60}');
    # alerting's fleet is read at most every known_ids_refresh_seconds to learn the machines it knows.
    new_ids: NewIdQuota = NewIdQuota(limit=10_000, window_seconds=3600)
    known_ids_refresh_seconds: float = Field(60.0, ge=0)
    # Failed authentications per client address: brute force and scrypt work are bounded by it.
    auth_failures: Rate = Rate(per_second=1, burst=10)
    # A verified key is trusted this long without a store read (and a revocation takes this long to
    # reach the other replicas).
    key_cache_seconds: float = Field(10.0, ge=0)
    retry_after_seconds: int = Field(1, ge=0)  # Retry-After of a 503 (a service or the store away)
    history_points: int = Field(500, ge=1, le=5000)  # predictions in GET /api/v1/machines/{id}
    machine_alerts: int = Field(1000, ge=1, le=100_000)  # alerts in GET /api/v1/machines/{id}


@lru_cache
def get_settings() -> GatewaySettings:
    return GatewaySettings()
