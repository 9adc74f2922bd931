"""A machine that goes quiet: the EquipmentActor's silence reminder (a Dapr reminder through localdapr)
raises a `silent` alert that reaches alerting, and readings coming back clear it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from localdapr.testing import wait_until
from tests.e2e.platform import Platform, alerts_of, running_platform, send_cycles, write_components

pytestmark = pytest.mark.e2e

SILENCE_AFTER_SECONDS = 2


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("e2e-silence")
    components = write_components(tmp / "components", "embedded")
    env = {
        "VIGIL_TRAINING_N_ESTIMATORS": "40",
        "VIGIL_EQUIPMENT_SILENCE_AFTER_SECONDS": str(SILENCE_AFTER_SECONDS),
        "VIGIL_EQUIPMENT_SILENCE_CHECK_SECONDS": "0.5",
    }
    with running_platform(components, tmp, env) as p:
        yield p


def test_a_quiet_machine_raises_a_silent_alert_cleared_when_data_returns(platform: Platform) -> None:
    eid = f"quiet-{datetime.now(UTC).strftime('%H%M%S%f')}"
    send_cycles(platform, eid, range(1, 6))
    opened = wait_until(
        lambda: [a for a in alerts_of(platform, eid, "silent") if a["state"] == "open"],
        timeout=SILENCE_AFTER_SECONDS + 15,
        what=f"a silent alert for {eid}",
    )
    assert opened[0]["episode"] == 1
    send_cycles(platform, eid, range(6, 8))
    cleared = wait_until(
        lambda: [a for a in alerts_of(platform, eid, "silent") if a["state"] == "cleared"],
        timeout=15,
        what=f"the silent alert of {eid} cleared",
    )
    assert cleared[0]["id"] == opened[0]["id"]
