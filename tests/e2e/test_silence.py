"""A machine that goes quiet: the EquipmentActor's silence reminder (a Dapr reminder through localdapr)
raises a `silent` alert that reaches alerting, and readings coming back clear it. A calm machine's
check is put off until the machine could turn silent, and the silence is still seen.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from apps.common.names import EQUIPMENT_ACTOR_TYPE, SILENCE_REMINDER
from localdapr.durations import parse_go_duration
from localdapr.testing import wait_until
from tests.e2e.platform import Platform, alerts_of, running_platform, send_cycles, write_components

pytestmark = pytest.mark.e2e

SILENCE_AFTER_SECONDS = 2
CHECK_SECONDS = 0.5


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("e2e-silence")
    components = write_components(tmp / "components", "embedded")
    env = {
        "VIGIL_TRAINING_N_ESTIMATORS": "40",
        "VIGIL_EQUIPMENT_SILENCE_AFTER_SECONDS": str(SILENCE_AFTER_SECONDS),
        "VIGIL_EQUIPMENT_SILENCE_CHECK_SECONDS": str(CHECK_SECONDS),
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


def test_a_calm_machines_check_waits_for_its_silence_and_still_sees_it(platform: Platform) -> None:
    eid = f"calm-{datetime.now(UTC).strftime('%H%M%S%f')}"
    sidecar = platform.apps["equipment"].sidecar
    reminder = (
        f"http://127.0.0.1:{sidecar.http_port}/v1.0/actors/{EQUIPMENT_ACTOR_TYPE}/{eid}/reminders/"
        f"{SILENCE_REMINDER}"
    )
    send_cycles(platform, eid, range(1, 6))
    sent = {"cycle": 5, "at": time.time()}

    def stretched() -> float | None:
        """The check's due time once registered past its period; until then the machine keeps
        reporting, so that a check finds most of the threshold still ahead whatever the load."""
        answer = httpx.get(reminder, timeout=5)
        if answer.status_code == 200:
            due = parse_go_duration(answer.json()["dueTime"])
            if due > CHECK_SECONDS:  # the regular registration is due within a period
                return due
        sent["cycle"] += 1
        sent["at"] = time.time()
        send_cycles(platform, eid, range(sent["cycle"], sent["cycle"] + 1))
        return None

    due = wait_until(stretched, timeout=30, interval=0.2, what=f"{eid}'s check registered past its period")
    assert due <= SILENCE_AFTER_SECONDS + CHECK_SECONDS
    opened = wait_until(
        lambda: [a for a in alerts_of(platform, eid, "silent") if a["state"] == "open"],
        timeout=SILENCE_AFTER_SECONDS + 15,
        what=f"a silent alert for {eid}",
    )
    raised = datetime.fromisoformat(opened[0]["raised_at"]).timestamp()
    assert raised >= sent["at"] + SILENCE_AFTER_SECONDS
