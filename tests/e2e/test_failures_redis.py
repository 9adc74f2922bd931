"""The faults of test_failures.py that differ by broker, on the Redis profile (Redis state and Redis
Streams pub/sub, which redelivers what a dead subscriber missed): equipment or alerting killed and
restarted mid-replay, every machine identical to its uninterrupted baseline twin. Its own module so
pytest-xdist runs it beside the embedded one rather than after it.
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
    with open_lab("redis", request, tmp_path_factory) as opened:
        yield opened


def test_equipment_killed_mid_run_loses_nothing_on_redis(lab: Lab) -> None:
    run = scenario(lab, chaos.kill_restart("equipment"))
    assert_identical(lab, run)
    assert run.replay.retried > 0, "nothing had to be resent: the fault did not hit the replay"


def test_alerting_killed_alerts_converge_on_redis(lab: Lab) -> None:
    # Killed as the first warning is raised: alert events are on their way while it is down.
    assert_identical(
        lab, scenario(lab, chaos.kill_restart("alerting", trigger=chaos.first_status("warning")))
    )
