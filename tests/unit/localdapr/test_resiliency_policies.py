"""Resiliency policies as daprd defines them: the breaker's states, `trip` expressions, default
policy names and the output binding's outbound policy."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from localdapr.bindings.base import BindingError, InvokeRequest, InvokeResponse, OutputBinding
from localdapr.bindings.runtime import LoadedBinding, OutputBindingError, invoke_output
from localdapr.components.spec import ComponentSpec
from localdapr.resiliency import CircuitBreaker, Resiliency, RetryPolicy, TargetPolicy, compile_trip


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_half_opens_and_closes_after_max_requests_successes() -> None:
    clock = Clock()
    breaker = CircuitBreaker(
        trip=compile_trip("consecutiveFailures > 2"), timeout=5, max_requests=2, clock=clock
    )
    for _ in range(3):
        assert breaker.allow()
        breaker.record(False)
    assert breaker.state == "open" and not breaker.allow()
    clock.now = 4.9
    assert not breaker.allow()
    clock.now = 5.0
    assert breaker.state == "half-open"
    assert breaker.allow() and breaker.allow() and not breaker.allow()  # maxRequests probes only
    breaker.record(True)
    assert breaker.state == "half-open"
    breaker.record(True)
    assert breaker.state == "closed" and breaker.allow()


def test_a_failed_probe_opens_it_again_for_another_timeout() -> None:
    clock = Clock()
    breaker = CircuitBreaker(trip=compile_trip("consecutiveFailures >= 1"), timeout=1, clock=clock)
    breaker.allow()
    breaker.record(False)
    clock.now = 1.0
    assert breaker.allow()
    breaker.record(False)
    assert breaker.state == "open"
    clock.now = 1.9
    assert not breaker.allow()
    clock.now = 2.0
    assert breaker.state == "half-open"


def test_interval_clears_the_counts_while_closed() -> None:
    clock = Clock()
    breaker = CircuitBreaker(trip=compile_trip("totalFailures >= 2"), timeout=1, interval=10, clock=clock)
    breaker.allow()
    breaker.record(False)
    clock.now = 10.0  # a new interval: the first failure is forgotten
    breaker.allow()
    breaker.record(False)
    assert breaker.state == "closed"
    breaker.allow()
    breaker.record(False)
    assert breaker.state == "open"


def test_trip_expressions() -> None:
    trip = compile_trip("requests > 3 && totalFailures >= 2 || consecutiveFailures > 4")
    counts = dict.fromkeys(("requests", "totalSuccesses", "totalFailures", "consecutiveSuccesses"), 0)
    assert not trip({**counts, "consecutiveFailures": 0, "requests": 4, "totalFailures": 1})
    assert trip({**counts, "consecutiveFailures": 0, "requests": 4, "totalFailures": 2})
    assert trip({**counts, "consecutiveFailures": 5})
    for bad in ("consecutiveFailures > x", "failures > 1", "size(x) > 1"):
        with pytest.raises(ValueError, match="cannot evaluate"):
            compile_trip(bad)


def test_exponential_backoff_is_randomised_around_daprds_intervals_and_capped() -> None:
    delays = list(RetryPolicy(policy="exponential", max_interval=2, max_retries=8).delays())
    bounds = [(0.25, 0.75), (0.375, 1.125), (0.5625, 1.6875)] + [(0.0, 2.0)] * 5
    assert len(delays) == 8
    assert all(low <= d <= high for d, (low, high) in zip(delays, bounds, strict=True))


def test_default_policy_names_from_the_most_specific() -> None:
    doc = {
        "kind": "Resiliency",
        "spec": {
            "policies": {
                "timeouts": {
                    "DefaultTimeoutPolicy": "9s",
                    "DefaultBindingComponentOutboundTimeoutPolicy": "3s",
                },
                "retries": {"DefaultComponentOutboundRetryPolicy": {"maxRetries": 1}},
                "circuitBreakers": {"DefaultActorCircuitBreakerPolicy": {"trip": "consecutiveFailures > 1"}},
            },
            "targets": {"components": {"hook": {"outbound": {"timeout": "DefaultTimeoutPolicy"}}}},
        },
    }
    res = Resiliency.from_documents([doc], "app")
    assert res.for_binding_outbound("other").timeout == 3
    assert res.for_binding_outbound("hook").timeout == 9  # a target's own names come first
    assert res.for_binding_outbound("other").retry is not None
    assert res.for_binding_inbound("other").retry is None
    assert res.for_actor("Any").breaker is res.for_actor("Any").breaker is not None
    assert res.for_app("x").timeout == 9 and res.for_app("x").breaker is None


class Flaky(OutputBinding):
    operations = ("post",)

    def __init__(self, failures: int, hang: bool = False) -> None:
        self.failures = failures
        self.hang = hang
        self.calls = 0

    @classmethod
    def from_spec(cls, spec: ComponentSpec) -> Flaky:
        raise NotImplementedError

    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(10)
        if self.calls <= self.failures:
            raise BindingError(f"failure {self.calls}", InvokeResponse(metadata={"statusCode": "500"}))
        return InvokeResponse(b"ok")


def loaded(binding: Flaky) -> dict[str, LoadedBinding]:
    spec = ComponentSpec("hook", "bindings.flaky", "v1", [], [], None, Path("hook.yaml"))
    return {"hook": LoadedBinding.of(spec, binding)}


def test_output_binding_retries_times_out_and_breaks() -> None:
    quick = RetryPolicy(duration=0.001, max_retries=2)
    binding = Flaky(2)
    got = asyncio.run(
        invoke_output(loaded(binding), "hook", InvokeRequest("post"), TargetPolicy(retry=quick))
    )
    assert got is not None and got.data == b"ok" and binding.calls == 3
    binding = Flaky(5)
    with pytest.raises(OutputBindingError, match="failure 3") as info:
        asyncio.run(invoke_output(loaded(binding), "hook", InvokeRequest("post"), TargetPolicy(retry=quick)))
    assert info.value.binding_metadata == {"statusCode": "500"}
    with pytest.raises(OutputBindingError, match="timeout"):
        asyncio.run(
            invoke_output(loaded(Flaky(0, hang=True)), "hook", InvokeRequest("post"), TargetPolicy(0.01))
        )
    breaker = CircuitBreaker(trip=compile_trip("consecutiveFailures >= 2"), timeout=60)
    binding = Flaky(9)
    for expected in ("failure 1", "failure 2", "circuit breaker is open"):
        with pytest.raises(OutputBindingError, match=expected):
            asyncio.run(
                invoke_output(loaded(binding), "hook", InvokeRequest("post"), TargetPolicy(breaker=breaker))
            )
    assert binding.calls == 2
    # A request the binding refuses before any attempt (unknown operation) is not retried.
    with pytest.raises(OutputBindingError, match="does not support operation get"):
        asyncio.run(invoke_output(loaded(Flaky(0)), "hook", InvokeRequest("get"), TargetPolicy(retry=quick)))
