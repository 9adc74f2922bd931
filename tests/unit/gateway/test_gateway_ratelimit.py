"""Token buckets: a burst, then the rate; Retry-After rounds up; memory stays bounded."""

from __future__ import annotations

from apps.gateway.ratelimit import Rate, TokenBuckets, retry_after_header


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_rate_then_refill() -> None:
    clock = Clock()
    buckets = TokenBuckets(clock)
    rate = Rate(per_second=2, burst=3)
    assert [buckets.take("k", rate) for _ in range(3)] == [None, None, None]
    wait = buckets.take("k", rate)
    assert wait is not None and abs(wait - 0.5) < 1e-9
    clock.now += 0.5
    assert buckets.take("k", rate) is None
    assert buckets.take("other", rate) is None, "buckets are per key"


def test_wait_does_not_spend() -> None:
    buckets = TokenBuckets(Clock())
    rate = Rate(per_second=1, burst=1)
    assert buckets.wait("k", rate) is None and buckets.wait("k", rate) is None
    assert buckets.take("k", rate) is None
    assert buckets.wait("k", rate) is not None


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert retry_after_header(0.01) == "1" and retry_after_header(1.2) == "2" and retry_after_header(3) == "3"


def test_full_buckets_are_forgotten_when_the_table_is_full() -> None:
    clock = Clock()
    buckets = TokenBuckets(clock, max_buckets=10)
    rate = Rate(per_second=1, burst=2)
    for i in range(10):
        buckets.take(i, rate)
    clock.now += 5  # every bucket refilled: nothing to remember
    buckets.take("new", rate)
    assert len(buckets._buckets) == 1
