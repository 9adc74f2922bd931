"""The parts of Dapr Resiliency resources localdapr applies: timeouts, retries and circuit breakers.

Targets: `apps.<app-id>` (service invocation), `actors.<type>` (actor calls),
`components.<name>.inbound` (pub/sub and input binding delivery to the app) and
`components.<name>.outbound` (output binding invocations). A target that names no policy gets daprd's
default policy names (`DefaultAppRetryPolicy`, `DefaultActorCircuitBreakerPolicy`,
`DefaultPubsubComponentInboundRetryPolicy`, `DefaultBindingComponentOutboundTimeoutPolicy`, ...), from
the most specific name to the least, as daprd looks them up.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from localdapr.durations import parse_go_duration

# daprd's exponential back-off (cenkalti/backoff as daprd configures it): the first wait is 500ms,
# each next one 1.5 times longer, each randomised by +/-50%; the field is not configurable in daprd.
EXPONENTIAL_INITIAL = 0.5
EXPONENTIAL_MULTIPLIER = 1.5
EXPONENTIAL_RANDOMIZATION = 0.5


@dataclass(slots=True)
class RetryPolicy:
    policy: str = "constant"  # constant | exponential
    duration: float = 5.0
    max_interval: float = 60.0
    max_retries: int = -1  # -1 = forever, daprd's default
    jitter: Callable[[float, float], float] = random.uniform

    def delays(self) -> Iterator[float]:
        """Seconds to wait before each retry; ends after max_retries (never, for -1)."""
        attempt = 0
        interval = EXPONENTIAL_INITIAL
        while self.max_retries < 0 or attempt < self.max_retries:
            if self.policy == "exponential":
                spread = interval * EXPONENTIAL_RANDOMIZATION
                yield min(self.jitter(interval - spread, interval + spread), self.max_interval)
                interval = min(interval * EXPONENTIAL_MULTIPLIER, self.max_interval)
            else:
                yield self.duration
            attempt += 1


_TRIP_TERM = re.compile(r"^\s*(\w+)\s*(>=|<=|==|!=|>|<)\s*(\d+)\s*$")
_COMPARE: dict[str, Callable[[int, int], bool]] = {
    ">": int.__gt__,
    ">=": int.__ge__,
    "<": int.__lt__,
    "<=": int.__le__,
    "==": int.__eq__,
    "!=": int.__ne__,
}
COUNTS = ("requests", "totalSuccesses", "totalFailures", "consecutiveSuccesses", "consecutiveFailures")


def compile_trip(expr: str) -> Callable[[dict[str, int]], bool]:
    """daprd's `trip` is a CEL expression over the breaker's counts; localdapr takes the subset such
    expressions use: comparisons of a count with a number, joined by `&&` and `||` (`&&` binds tighter)."""
    alternatives = []
    for alternative in expr.split("||"):
        terms = []
        for term in alternative.split("&&"):
            match = _TRIP_TERM.match(term)
            if match is None or match.group(1) not in COUNTS:
                raise ValueError(f"circuit breaker trip {expr!r}: cannot evaluate {term.strip()!r}")
            terms.append((match.group(1), _COMPARE[match.group(2)], int(match.group(3))))
        alternatives.append(terms)

    def trip(counts: dict[str, int]) -> bool:
        return any(all(op(counts[name], value) for name, op, value in terms) for terms in alternatives)

    return trip


CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"
DEFAULT_TRIP = "consecutiveFailures > 5"


@dataclass(slots=True)
class CircuitBreaker:
    """daprd's breaker (sony/gobreaker): closed until `trip` holds after a failure; open for `timeout`
    seconds, refusing every call; then half-open, letting `max_requests` calls through: that many
    successes close it, one failure opens it again. Closed, its counts are cleared every `interval`
    seconds (0: never)."""

    trip: Callable[[dict[str, int]], bool] = field(default_factory=lambda: compile_trip(DEFAULT_TRIP))
    timeout: float = 60.0
    interval: float = 0.0
    max_requests: int = 1
    clock: Callable[[], float] = time.monotonic
    _state: str = CLOSED
    _counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTS, 0))
    _expiry: float = 0.0  # closed: when the counts are cleared; open: when it half-opens

    def __post_init__(self) -> None:
        self._to(CLOSED)

    def _to(self, state: str) -> None:
        self._state = state
        self._counts = dict.fromkeys(COUNTS, 0)
        now = self.clock()
        if state == OPEN:
            self._expiry = now + self.timeout
        elif state == CLOSED and self.interval > 0:
            self._expiry = now + self.interval
        else:
            self._expiry = 0.0

    @property
    def state(self) -> str:
        now = self.clock()
        if self._state == CLOSED and self._expiry and now >= self._expiry:
            self._to(CLOSED)
        elif self._state == OPEN and now >= self._expiry:
            self._to(HALF_OPEN)
        return self._state

    def allow(self) -> bool:
        """Whether a call may go now; a call let through must be followed by one `record`."""
        state = self.state
        if state == OPEN or (state == HALF_OPEN and self._counts["requests"] >= self.max_requests):
            return False
        self._counts["requests"] += 1
        return True

    def record(self, ok: bool) -> None:
        state = self.state
        counts = self._counts
        if ok:
            counts["totalSuccesses"] += 1
            counts["consecutiveSuccesses"] += 1
            counts["consecutiveFailures"] = 0
            if state == HALF_OPEN and counts["consecutiveSuccesses"] >= self.max_requests:
                self._to(CLOSED)
            return
        counts["totalFailures"] += 1
        counts["consecutiveFailures"] += 1
        counts["consecutiveSuccesses"] = 0
        if state == HALF_OPEN or (state == CLOSED and self.trip(counts)):
            self._to(OPEN)


@dataclass(slots=True)
class TargetPolicy:
    timeout: float | None = None
    retry: RetryPolicy | None = None
    breaker: CircuitBreaker | None = None


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
                    max_interval=parse_go_duration(str(value.get("maxInterval", "60s"))),
                    max_retries=int(value.get("maxRetries", -1)),
                )
            for name, value in (policies.get("circuitBreakers") or {}).items():
                compile_trip(str(value.get("trip", DEFAULT_TRIP)))  # a bad one fails at load
                res.breakers[name] = value
            for kind, targets in (spec.get("targets") or {}).items():
                res.targets.setdefault(kind, {}).update(targets or {})
        return res

    def _policy(self, kind: str, name: str, direction: str | None, defaults: tuple[str, ...]) -> TargetPolicy:
        target = (self.targets.get(kind) or {}).get(name) or {}
        if direction:
            target = target.get(direction) or {}

        def pick(field_name: str, suffix: str, known: dict[str, Any]) -> str | None:
            if target.get(field_name):
                return str(target[field_name])
            return next((d + suffix for d in defaults if d + suffix in known), None)

        timeout_name = pick("timeout", "TimeoutPolicy", self.timeouts)
        retry_name = pick("retry", "RetryPolicy", self.retries)
        breaker_name = pick("circuitBreaker", "CircuitBreakerPolicy", self.breakers)
        breaker = None
        if breaker_name in self.breakers:
            # One breaker per target (daprd's actor scope "type"): its state outlives single calls.
            key = f"{kind}/{name}/{direction}/{breaker_name}"
            if key not in self._breaker_instances:
                cfg = self.breakers[breaker_name]
                self._breaker_instances[key] = CircuitBreaker(
                    trip=compile_trip(str(cfg.get("trip", DEFAULT_TRIP))),
                    timeout=parse_go_duration(str(cfg.get("timeout", "60s"))),
                    interval=parse_go_duration(str(cfg.get("interval", "0s"))),
                    max_requests=int(cfg.get("maxRequests", 1)),
                )
            breaker = self._breaker_instances[key]
        return TargetPolicy(
            timeout=self.timeouts.get(timeout_name) if timeout_name else None,
            retry=self.retries.get(retry_name) if retry_name else None,
            breaker=breaker,
        )

    def for_app(self, app_id: str) -> TargetPolicy:
        return self._policy("apps", app_id, None, ("DefaultApp", "Default"))

    def for_actor(self, actor_type: str) -> TargetPolicy:
        return self._policy("actors", actor_type, None, ("DefaultActor", "Default"))

    def for_pubsub_inbound(self, component: str) -> TargetPolicy:
        return self._component(component, "inbound", "Pubsub")

    def for_binding_inbound(self, component: str) -> TargetPolicy:
        return self._component(component, "inbound", "Binding")

    def for_binding_outbound(self, component: str) -> TargetPolicy:
        return self._component(component, "outbound", "Binding")

    def _component(self, component: str, direction: str, kind: str) -> TargetPolicy:
        way = direction.capitalize()
        defaults = (f"Default{kind}Component{way}", f"DefaultComponent{way}", "DefaultComponent", "Default")
        return self._policy("components", component, direction, defaults)
