"""Configuration of the dashboard, from environment variables (prefix VIGIL_DASHBOARD_)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class DashboardSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VIGIL_DASHBOARD_")

    port: int = Field(8006, validation_alias="APP_PORT")
    # Loopback on a laptop, where only the app's own sidecar calls it; a container sets 0.0.0.0 so
    # kubelet probes and the Service reach the app on the pod address.
    host: str = Field("127.0.0.1", validation_alias="VIGIL_HOST")
    # Predictions asked of a machine's actor (GetHistory n); the actor keeps the last 500.
    history_points: int = Field(500, ge=1, le=500)
    # Alerts listed in the alerts view (newest raised first) and read per machine.
    alert_limit: int = Field(5000, ge=1, le=100_000)
    # Live updates reaching an open page are coalesced and pushed at most this often (per page).
    push_interval_seconds: float = Field(0.5, gt=0, le=10)
    # equipment-health is subscribed in bulk (bulkSubscribe): up to this many snapshots per delivery,
    # or what arrived within this many ms of the first (read when the sidecar asks GET /dapr/subscribe).
    health_bulk_max_messages: int = Field(100, ge=1, le=1000)
    health_bulk_max_await_ms: int = Field(50, ge=1, le=10_000)
    # Timeout of one service-invocation or actor call through the sidecar.
    call_timeout_seconds: int = Field(30, ge=1)
    # How long a page may take to load its data before the browser gets an error.
    page_timeout_seconds: float = Field(30.0, gt=0)
    # The name an acknowledgement is recorded under when the operator leaves "by" empty.
    default_operator: str = Field("operator", min_length=1, max_length=128)
    # Sign-in with a gateway API key (signin.py): on wherever anyone but the operators can reach the
    # dashboard. Off by default only for a laptop's demo, where the dashboard listens on loopback.
    sign_in: bool = False
    # How long a session lasts, and the secret that signs it (shared by replicas, from a secret store;
    # empty: a random one per process, so a restart signs everyone out).
    session_hours: float = Field(12.0, gt=0, le=24 * 30)
    session_secret: SecretStr = SecretStr("")


@lru_cache
def get_settings() -> DashboardSettings:
    return DashboardSettings()
