"""Token buckets, one per (caller, route): a caller may burst up to `burst` requests, then gets `rate`
requests a second; past that the answer is 429 with how long to wait (`Retry-After`).

In memory, per gateway replica (n replicas allow n times the rate; a shared limit would need a store
round trip per request). Memory is bounded: a bucket that has refilled completely carries no
information, so those are forgotten when the table grows past `max_buckets`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


class Rate(BaseModel):
    """`per_second` requests a second on average, `burst` at once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    per_second: float = Field(gt=0)
    burst: int = Field(ge=1)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class TokenBuckets:
    def __init__(self, clock: Callable[[], float] = time.monotonic, max_buckets: int = 100_000) -> None:
        self.clock = clock
        self.max_buckets = max_buckets
        self._buckets: dict[Hashable, tuple[_Bucket, Rate]] = {}

    def take(self, key: Hashable, rate: Rate) -> float | None:
        """Spend one token: None if there was one, else the seconds until there will be."""
        bucket = self._refilled(key, rate)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / rate.per_second

    def wait(self, key: Hashable, rate: Rate) -> float | None:
        """Like `take` without spending: for a limit counted only when something goes wrong."""
        bucket = self._refilled(key, rate)
        return None if bucket.tokens >= 1.0 else (1.0 - bucket.tokens) / rate.per_second

    def _refilled(self, key: Hashable, rate: Rate) -> _Bucket:
        now = self.clock()
        found = self._buckets.get(key)
        if found is None:
            if len(self._buckets) >= self.max_buckets:
                self._forget_full(now)
            bucket = _Bucket(float(rate.burst), now)
            self._buckets[key] = (bucket, rate)
            return bucket
        bucket = found[0]
        bucket.tokens = min(float(rate.burst), bucket.tokens + (now - bucket.at) * rate.per_second)
        bucket.at = now
        return bucket

    def _forget_full(self, now: float) -> None:
        self._buckets = {
            k: (b, r)
            for k, (b, r) in self._buckets.items()
            if b.tokens + (now - b.at) * r.per_second < r.burst
        }
        if len(self._buckets) >= self.max_buckets:  # every one of them busy: start over rather than grow
            self._buckets.clear()


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds: round up, so a client that waits that long finds a token."""
    return str(max(1, math.ceil(seconds)))
