"""A machine that goes quiet: the EquipmentActor's silence reminder (a Dapr reminder through localdapr)
raises a `silent` alert that reaches alerting, and readings coming back clear it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from apps.common import cmapss
from localdapr.testing import wait_until
from tests.e2e.platform import Platform, running_platform, write_components

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


def send(platform: Platform, equipment_id: str, cycles: range) -> None:
    unit = cmapss.load_train()[3]
    batch = [
        {
            "equipment_id": equipment_id,
            "profile": "turbofan",
            "timestamp": datetime.now(UTC).isoformat(),
            "seq": c,
            "values": cmapss.row_values(unit[c - 1]),
        }
        for c in cycles
    ]
    resp = httpx.post(f"{platform.url('ingestion')}/v1/readings", json=batch, timeout=30)
    assert resp.status_code == 200 and resp.json()["accepted"] == len(batch), resp.text


def silent_alerts(platform: Platform, equipment_id: str) -> list[dict[str, Any]]:
    resp = httpx.get(
        f"{platform.url('alerting')}/v1/alerts", params={"equipment_id": equipment_id, "kind": "silent"}
    )
    return list(resp.json())


def test_a_quiet_machine_raises_a_silent_alert_cleared_when_data_returns(platform: Platform) -> None:
    eid = f"quiet-{datetime.now(UTC).strftime('%H%M%S%f')}"
    send(platform, eid, range(1, 6))
    opened = wait_until(
        lambda: [a for a in silent_alerts(platform, eid) if a["state"] == "open"],
        timeout=SILENCE_AFTER_SECONDS + 15,
        what=f"a silent alert for {eid}",
    )
    assert opened[0]["episode"] == 1
    send(platform, eid, range(6, 8))
    cleared = wait_until(
        lambda: [a for a in silent_alerts(platform, eid) if a["state"] == "cleared"],
        timeout=15,
        what=f"the silent alert of {eid} cleared",
    )
    assert cleared[0]["id"] == opened[0]["id"]
