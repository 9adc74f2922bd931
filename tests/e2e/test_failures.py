"""Never miss a failure: under crashes, hangs and restarts nothing is lost or silently wrong.

FD001 units are replayed to their last cycle through the `vigil replay` client (paced, so each fault
lands mid-run), once uninterrupted and once per fault, each under its own equipment-id prefix on the
same platform. Once settled, every machine (prefix stripped) must be identical to its baseline twin:
readings applied and last seq, every prediction (seq and RUL, in order), the alerts in alerting (ids,
severities, states) with none repeated, and its /v1/fleet entry. Faults: `kill -9` of equipment,
ingestion or alerting, restarted on the same port a few seconds later while the replay goes on; and
inference hung (SIGSTOP) for longer than the circuit breaker stays open, during which every machine
must report stale, never ok. The machinery is in tests/e2e/chaos.py (bench/bench_failures.py runs a
longer variant). This module runs the embedded profile; test_failures_redis.py the faults again on Redis.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e import chaos
from tests.e2e.fault_lab import Lab, assert_identical, open_lab, scenario

# The first test of the module also starts the platform (pytest-timeout counts fixture set-up) and
# replays the uninterrupted baseline before its own fault run: over the suite's 240 s hang guard on a
# loaded machine (the Redis one hit it once: 110 s of set-up, 130 s of the two replays, nothing hung).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(480)]


@pytest.fixture(scope="module")
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    with open_lab("embedded", request, tmp_path_factory) as opened:
        yield opened


def test_equipment_killed_mid_run_loses_nothing(lab: Lab) -> None:
    run = scenario(lab, chaos.kill_restart("equipment"))
    assert_identical(lab, run)
    assert run.replay.retried > 0, "nothing had to be resent: the fault did not hit the replay"


def test_inference_hung_predictions_catch_up_and_machines_report_stale(lab: Lab) -> None:
    assert_identical(lab, scenario(lab, chaos.pause_inference()))


def test_alerting_killed_alerts_converge(lab: Lab) -> None:
    # Killed as the first warning is raised: alert events are on their way while it is down.
    assert_identical(
        lab, scenario(lab, chaos.kill_restart("alerting", trigger=chaos.first_status("warning")))
    )


def test_ingestion_killed_client_resends(lab: Lab) -> None:
    run = scenario(lab, chaos.kill_restart("ingestion"))
    assert_identical(lab, run)
    assert run.replay.retried > 0, "nothing had to be resent: the fault did not hit the replay"


def test_alerting_back_with_its_state_lost_alerts_are_announced_again(lab: Lab) -> None:
    """Both brokers redeliver what a dead alerting missed, so a crash alone never needs the actors'
    re-announce; an alerting that comes back on an empty store does: the alerts raised before it went
    down are published again by the actors' reminder. (Last on the embedded platform: it empties
    alerting's store for every earlier run too, which the re-announce restores as well.)"""
    fault = chaos.kill_restart("alerting", trigger=chaos.first_status("critical"), lose_state=True)
    assert_identical(lab, scenario(lab, fault))
