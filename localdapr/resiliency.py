"""The parts of Dapr Resiliency resources localdapr applies: timeouts, retries and circuit breakers.

Targets: `apps.<app-id>` (service invocation), `actors.<type>` (actor calls) and
`components.<name>.inbound` (pub/sub and input binding delivery to the app). Default policy names
(`DefaultAppRetryPolicy`, `DefaultPubsubComponentInboundRetryPolicy`, ...) apply when a target names none.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from localdapr.durations import parse_go_duration


@dataclass(slots=True)
class RetryPolicy:
    policy: str = "constant"  # constant | exponential
    duration: float = 1.0
    initial_interval: float = 0.5
    max_interval: float = 60.0
    max_retries: int = 0  # -1 = forever

    def delays(self) -> Iterator[float]:
        """Seconds to wait before each retry; ends after max_retries (never, for -1)."""
        attempt = 0
        while self.max_retries < 0 or attempt < self.max_retries:
            if self.policy == "exponential":
                yield min(self.initial_interval * (1.5**attempt), self.max_interval)
            else:
                yield self.duration
            attempt += 1


@dataclass(slots=True)
class CircuitBreaker:
    """Opens after `trip_after` consecutive failures; half-opens after `timeout` seconds."""

    trip_after: int = 5
    timeout: float = 30.0
    max_requests: int = 1
    _failures: int = 0
    _opened_at: float | None = None

    def allow(self) -> bool:
        if self._opened_at is None:
            return True
        return time.monotonic() - self._opened_at >= self.timeout  # half-open: let a probe through

    def record(self, ok: bool) -> None:
        if ok:
            self._failures = 0
            self._opened_at = None
            return
        self._failures += 1
        if self._failures >= self.trip_after:
            self._opened_at = time.monotonic()

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        return "half-open" if self.allow() else "open"


@dataclass(slots=True)
class TargetPolicy:
    timeout: float | None = None
    retry: RetryPolicy | None = None
    breaker: CircuitBreaker | None = None


def _trip_count(expr: str) -> int:
    # daprd's trip is a CEL expression; the common form is "consecutiveFailures > N".
    text = expr.replace(" ", "")
    for op, extra in ((">=", 0), (">", 1)):
        if text.startswith("consecutiveFailures" + op):
            return int(text.split(op, 1)[1]) + extra
    return 5


@dataclass
class Resiliency:
    timeouts: dict[str, float] = field(default_factory=dict)
    retries: dict[str, RetryPolicy] = field(default_factory=dict)
    breakers: dict[str, dict[str, Any]] = field(default_factory=dict)
    targets: dict[str, Any] = field(default_factory=dict)
    _breaker_instances: dict[str, CircuitBreaker] = field(default_factory=dict)

    @classmethod
    def from_documents(cls, docs: list[dict[str, Any]], app_id: str) -> Resiliency:
        res = cls()
        for doc in docs:
            scopes = doc.get("scopes") or []
            if scopes and app_id not in scopes:
                continue
            spec = doc.get("spec") or {}
            policies = spec.get("policies") or {}
            for name, value in (policies.get("timeouts") or {}).items():
                res.timeouts[name] = parse_go_duration(str(value))
            for name, value in (policies.get("retries") or {}).items():
                res.retries[name] = RetryPolicy(
                    policy=str(value.get("policy", "constant")),
                    duration=parse_go_duration(str(value.get("duration", "5s"))),
                    initial_interval=parse_go_duration(str(value.get("initialInterval", "500ms"))),
                    max_interval=parse_go_duration(str(value.get("maxInterval", "60s"))),
                    max_retries=int(value.get("maxRetries", -1)),
                )
            res.breakers.update(policies.get("circuitBreakers") or {})
            for kind, targets in (spec.get("targets") or {}).items():
                res.targets.setdefault(kind, {}).update(targets or {})
        return res

    def _policy(self, kind: str, name: str, direction: str | None, default_prefix: str) -> TargetPolicy:
        target = (self.targets.get(kind) or {}).get(name) or {}
        if direction:
            target = target.get(direction) or {}
        timeout_name = target.get("timeout") or f"{default_prefix}TimeoutPolicy"
        retry_name = target.get("retry") or f"{default_prefix}RetryPolicy"
        breaker_name = target.get("circuitBreaker") or f"{default_prefix}CircuitBreakerPolicy"
        breaker = None
        if breaker_name in self.breakers:
            key = f"{kind}/{name}/{breaker_name}"
            if key not in self._breaker_instances:
                cfg = self.breakers[breaker_name]
                self._breaker_instances[key] = CircuitBreaker(
                    trip_after=_trip_count(str(cfg.get("trip", "consecutiveFailures > 5"))),
                    timeout=parse_go_duration(str(cfg.get("timeout", "60s"))),
                    max_requests=int(cfg.get("maxRequests", 1)),
                )
            breaker = self._breaker_instances[key]
        return TargetPolicy(
            timeout=self.timeouts.get(timeout_name), retry=self.retries.get(retry_name), breaker=breaker
        )

    def for_app(self, app_id: str) -> TargetPolicy:
        return self._policy("apps", app_id, None, "DefaultApp")

    def for_actor(self, actor_type: str) -> TargetPolicy:
        return self._policy("actors", actor_type, None, "DefaultActor")

    def for_pubsub_inbound(self, component: str) -> TargetPolicy:
        return self._component_inbound(component, "DefaultPubsubComponentInbound")

    def for_binding_inbound(self, component: str) -> TargetPolicy:
        return self._component_inbound(component, "DefaultBindingComponentInbound")

    def _component_inbound(self, component: str, default_prefix: str) -> TargetPolicy:
        policy = self._policy("components", component, "inbound", default_prefix)
        if policy.retry is None:
            policy.retry = self._policy("components", component, "inbound", "DefaultComponentInbound").retry
        return policy
