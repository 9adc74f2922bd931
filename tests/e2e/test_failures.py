"""Never miss a failure: under crashes, hangs and restarts nothing is lost or silently wrong.

FD001 units are replayed to their last cycle through the `vigil replay` client (paced, so each fault
lands mid-run), once uninterrupted and once per fault, each under its own equipment-id prefix on the
same platform. Once settled, every machine (prefix stripped) must be identical to its baseline twin:
readings applied and last seq, every prediction (seq and RUL, in order), the alerts in alerting (ids,
severities, states) with none repeated, and its /v1/fleet entry. Faults: `kill -9` of equipment,
ingestion or alerting, restarted on the same port a few seconds later while the replay goes on; and
inference hung (SIGSTOP) for longer than the circuit breaker stays open, during which every machine
must report stale, never ok. The machinery is in tests/e2e/chaos.py (bench/bench_failures.py runs a
longer variant).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.e2e import chaos
from tests.e2e.platform import Platform, running_platform, write_components

pytestmark = pytest.mark.e2e

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


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    profile: str = request.param
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


@pytest.mark.parametrize("lab", ["embedded", "redis"], indirect=True)
def test_equipment_killed_mid_run_loses_nothing(lab: Lab) -> None:
    run = scenario(lab, chaos.kill_restart("equipment"))
    assert_identical(lab, run)
    assert run.replay.retried > 0, "nothing had to be resent: the fault did not hit the replay"


@pytest.mark.parametrize("lab", ["embedded"], indirect=True)
def test_inference_hung_predictions_catch_up_and_machines_report_stale(lab: Lab) -> None:
    assert_identical(lab, scenario(lab, chaos.pause_inference()))


@pytest.mark.parametrize("lab", ["embedded", "redis"], indirect=True)
def test_alerting_killed_alerts_converge(lab: Lab) -> None:
    # Killed as the first warning is raised: alert events are on their way while it is down.
    assert_identical(
        lab, scenario(lab, chaos.kill_restart("alerting", trigger=chaos.first_status("warning")))
    )


@pytest.mark.parametrize("lab", ["embedded"], indirect=True)
def test_ingestion_killed_client_resends(lab: Lab) -> None:
    run = scenario(lab, chaos.kill_restart("ingestion"))
    assert_identical(lab, run)
    assert run.replay.retried > 0, "nothing had to be resent: the fault did not hit the replay"


@pytest.mark.parametrize("lab", ["embedded"], indirect=True)
def test_alerting_back_with_its_state_lost_alerts_are_announced_again(lab: Lab) -> None:
    """Both brokers redeliver what a dead alerting missed, so a crash alone never needs the actors'
    re-announce; an alerting that comes back on an empty store does: the alerts raised before it went
    down are published again by the actors' reminder. (Last on the embedded platform: it empties
    alerting's store for every earlier run too, which the re-announce restores as well.)"""
    fault = chaos.kill_restart("alerting", trigger=chaos.first_status("critical"), lose_state=True)
    assert_identical(lab, scenario(lab, fault))
