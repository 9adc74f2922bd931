"""The platform and the uninterrupted baseline run the fault tests compare against (tests/e2e/
test_failures.py on the embedded profile, test_failures_redis.py on Redis: one module per profile, so
pytest-xdist runs the two platforms' replays on different workers)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest

from tests.e2e import chaos
from tests.e2e.platform import Platform, running_platform, write_components

FAILURES_REDIS_DB = 12  # flushed at the start of the Redis run; nothing else uses it


class Lab:
    """One platform and its baseline run (made once, on first use)."""

    def __init__(self, platform: Platform, profile: str) -> None:
        self.platform = platform
        self.profile = profile
        self._baseline: chaos.FaultRun | None = None

    @property
    def baseline(self) -> chaos.FaultRun:
        if self._baseline is None:
            run = chaos.run(self.platform, self.prefix("base"))
            assert_replay_complete(run)
            for name, machine in run.outcome.machines.items():
                # A meaningful baseline: every engine is replayed to failure and ends critical.
                assert machine.open_alert_severity == "critical", (name, machine)
            self._baseline = run
        return self._baseline

    def prefix(self, what: str) -> str:
        return f"{what}-{uuid.uuid4().hex[:4]}-"


@contextlib.contextmanager
def open_lab(
    profile: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Lab]:
    tmp = tmp_path_factory.mktemp(f"failures-{profile}")
    redis = None
    if profile == "redis":
        redis = request.getfixturevalue("redis_url")
        import redis as redis_client  # the test may talk to Redis directly; the apps never do

        host, port = redis.split(":")
        redis_client.Redis(host=host, port=int(port), db=FAILURES_REDIS_DB).flushdb()
    components = write_components(tmp / "components", profile, redis, FAILURES_REDIS_DB)
    with running_platform(components, tmp, dict(chaos.FAULT_ENV)) as platform:
        yield Lab(platform, profile)


def assert_replay_complete(run: chaos.FaultRun) -> None:
    p = run.progress
    assert not p.interrupted and p.sent == p.total_readings, p.summary()
    assert p.rejected == 0, f"readings refused for good: {p.reasons}"
    assert p.accepted + p.duplicates == p.sent, p.summary()


def assert_identical(lab: Lab, run: chaos.FaultRun) -> None:
    assert run.fault is not None
    assert not run.fault.problems, run.fault.problems
    assert_replay_complete(run)
    base = lab.baseline
    diff = chaos.compare(base.outcome, run.outcome, run.replay.expected)
    assert diff.identical, "\n".join(diff.details)


def scenario(lab: Lab, fault: chaos.Fault) -> chaos.FaultRun:
    lab.baseline  # noqa: B018 - the uninterrupted run comes first
    return chaos.run(lab.platform, lab.prefix(fault.name.split()[-1][:5]), fault)
