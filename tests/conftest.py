"""Shared fixtures: the real servers on loopback, skipped with a reason when unreachable.

`VIGIL_REQUIRE_SERVICES=1` (set by `.ci/run`) turns every such skip into a failure, so CI cannot go
green by skipping the tests that need Redis.
"""

from __future__ import annotations

import os
import socket

import pytest

REDIS_ADDRESS = os.environ.get("VIGIL_TEST_REDIS", "127.0.0.1:6379")


def services_required() -> bool:
    return os.environ.get("VIGIL_REQUIRE_SERVICES", "").strip().lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip with `reason`, or fail with it when CI demands the real servers."""
    if services_required():
        pytest.fail(f"{reason} (VIGIL_REQUIRE_SERVICES is set, so this is a failure, not a skip)")
    pytest.skip(reason)


def reachable(address: str, timeout: float = 1.0) -> str | None:
    """None when something listens at host:port, else why not."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis as `host:port` (what a component's redisHost takes)."""
    problem = reachable(REDIS_ADDRESS)
    if problem is not None:
        skip_or_fail(f"Redis is not reachable at {REDIS_ADDRESS}: {problem}")
    return REDIS_ADDRESS
