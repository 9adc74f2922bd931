"""Configuration of the alerting service, from environment variables (prefix VIGIL_ALERTING_)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from apps.alerting.notifications import DEFAULT_CRITICAL, DEFAULT_WARNING, NotifyPolicy
from apps.alerting.sender import SenderSettings


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
    # How far ahead of alerting's clock an actor's times may be; later ones are taken as received now
    # (logged, counted): a sender's clock never decides the order of what alerting keeps.
    max_clock_skew_seconds: float = Field(300.0, ge=0)
    # Keys per bulk read of the state store.
    bulk_read_chunk: int = Field(500, ge=1)
    # equipment-health is subscribed in bulk (bulkSubscribe): the sidecar delivers up to this many
    # snapshots in one call, or what arrived within this many ms of the first; a batch is recorded
    # with one bulk read and one transaction. Read when the sidecar asks GET /dapr/subscribe.
    health_bulk_max_messages: int = Field(100, ge=1, le=1000)
    health_bulk_max_await_ms: int = Field(50, ge=1, le=10_000)
    # Alert changes sent through the `notifications` binding, per severity of the alert: any of open,
    # escalate, clear, reopen, acknowledge, resolve (comma-separated; empty = none).
    notify_warning: str = DEFAULT_WARNING
    notify_critical: str = DEFAULT_CRITICAL
    # Delivery: one attempt's timeout, the backoff between attempts (doubling from the first to the
    # cap), when a notification is given up, and how often the outbox is looked at besides when an
    # alert change wakes the sender (another replica's notifications, a previous run's).
    notify_timeout_seconds: float = Field(10.0, gt=0)
    notify_initial_backoff_seconds: float = Field(1.0, gt=0)
    notify_max_backoff_seconds: float = Field(60.0, gt=0)
    notify_give_up_after_seconds: float = Field(24 * 3600.0, gt=0)
    notify_poll_seconds: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _policy_parses(self) -> AlertingSettings:
        self.notify_policy()  # a typo in an action list stops the start, naming it
        return self

    def notify_policy(self) -> NotifyPolicy:
        return NotifyPolicy.parse(self.notify_warning, self.notify_critical)

    def sender_settings(self) -> SenderSettings:
        return SenderSettings(
            timeout=self.notify_timeout_seconds,
            initial_backoff=self.notify_initial_backoff_seconds,
            max_backoff=self.notify_max_backoff_seconds,
            give_up_after=self.notify_give_up_after_seconds,
            poll=self.notify_poll_seconds,
        )


@lru_cache
def get_settings() -> AlertingSettings:
    return AlertingSettings()
