"""Operators' actions through the whole platform: resolving an alert reaches the machine's actor (a
condition that persists opens a new alert, not the resolved one again), and a retired machine is no
longer watched (its silence reminder is gone) while the others still are.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from localdapr.testing import wait_until
from tests.e2e.platform import Platform, alerts_of, running_platform, send_cycles, write_components

pytestmark = pytest.mark.e2e

SILENCE_AFTER_SECONDS = 2


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("e2e-operators")
    env = {
        "VIGIL_TRAINING_N_ESTIMATORS": "40",
        "VIGIL_EQUIPMENT_SILENCE_AFTER_SECONDS": str(SILENCE_AFTER_SECONDS),
        "VIGIL_EQUIPMENT_SILENCE_CHECK_SECONDS": "0.5",
    }
    with running_platform(write_components(tmp / "components", "embedded"), tmp, env) as p:
        yield p


def machine(prefix: str) -> str:
    return f"{prefix}-{datetime.now(UTC).strftime('%H%M%S%f')}"


def test_a_resolve_reaches_the_actor_and_a_persisting_condition_is_a_new_alert(platform: Platform) -> None:
    eid = machine("resolve")
    send_cycles(platform, eid, range(1, 6))
    (opened,) = wait_until(lambda: alerts_of(platform, eid, "silent"), timeout=20, what="a silent alert")
    alerting = platform.url("alerting")
    resolved = httpx.post(
        f"{alerting}/v1/alerts/{opened['id']}/resolve", json={"by": "e2e", "note": "sensor cable"}, timeout=30
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["state"] == "resolved" and resolved.json()["history"][-1]["note"] == "sensor cable"
    # Still silent: the actor counts again from the resolve and opens episode 2; episode 1 stays resolved.
    again = wait_until(
        lambda: [a for a in alerts_of(platform, eid, "silent") if a["episode"] == 2],
        timeout=20,
        what="episode 2",
    )
    assert again[0]["state"] == "open"
    assert [a["state"] for a in alerts_of(platform, eid, "silent") if a["episode"] == 1] == ["resolved"]
    refused = httpx.post(f"{alerting}/v1/alerts/{opened['id']}/ack", json={"by": "e2e"}, timeout=30)
    assert refused.status_code == 409 and "resolved by e2e" in refused.json()["detail"]


def test_a_retired_machine_is_no_longer_watched(platform: Platform) -> None:
    retired, watched = machine("retired"), machine("watched")
    send_cycles(platform, retired, range(1, 6))
    send_cycles(platform, watched, range(1, 6))
    for eid in (retired, watched):
        wait_until(
            lambda eid=eid: alerts_of(platform, eid, "silent"), timeout=20, what=f"{eid}'s silent alert"
        )
    alerting = platform.url("alerting")
    resp = httpx.request(
        "DELETE", f"{alerting}/v1/fleet/{retired}", json={"by": "e2e", "note": "scrapped"}, timeout=30
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["resolved_alerts"] == [f"{retired}:silent:1"]
    fleet = {m["equipment_id"] for m in httpx.get(f"{alerting}/v1/fleet", timeout=10).json()["machines"]}
    assert retired not in fleet
    # Resolved after the retire, the watched machine's silence is counted again from then: its second
    # alert comes SILENCE_AFTER_SECONDS later. Had the retired machine still been watched, its own would
    # have come at most one reminder period (0.5 s) after that same delay, counted from the earlier retire.
    watched_id = f"{watched}:silent:1"
    assert (
        httpx.post(f"{alerting}/v1/alerts/{watched_id}/resolve", json={"by": "e2e"}, timeout=30).status_code
        == 200
    )
    (second,) = wait_until(
        lambda: [a for a in alerts_of(platform, watched, "silent") if a["episode"] == 2],
        timeout=20,
        what="watched again",
    )
    raised = datetime.fromisoformat(second["raised_at"])
    wait_until(
        lambda: (datetime.now(UTC) - raised).total_seconds() > 1.0, timeout=5, what="a reminder period on"
    )
    assert [a["state"] for a in alerts_of(platform, retired, "silent")] == ["resolved"], (
        "no alert while retired"
    )
    # Readings bring it back: in the fleet again, and watched again.
    send_cycles(platform, retired, range(6, 8))
    wait_until(
        lambda: (
            retired
            in {m["equipment_id"] for m in httpx.get(f"{alerting}/v1/fleet", timeout=10).json()["machines"]}
        ),
        timeout=20,
        what="back in the fleet",
    )
    wait_until(lambda: len(alerts_of(platform, retired, "silent")) == 2, timeout=20, what="watched again")
