"""alerting's alerts, fleet and dead letters survive an app restart, and a sidecar restart (SQLite state).

A module of its own: pubsub.in-memory is process-wide, and another running `alerting` in the same
consumer group (the other module's fixture) would take half of the messages, as a replica would.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
import pytest

from apps.alerting.domain import dead_letter_from
from apps.alerting.store import dead_letter_shard
from apps.common.names import TOPIC_ALERTS, TOPIC_EQUIPMENT_HEALTH, TOPIC_READINGS_DEAD_LETTER
from localdapr.testing import wait_until
from tests.integration.alerting.test_alerting_sidecar import (
    Alerting,
    alerts_of,
    machine,
    start_alerting,
    write_resources,
)
from tests.unit.alerting.helpers import alert, at, snapshot

pytestmark = pytest.mark.sidecar


def same_dead_letter_shard_ids(running: Alerting) -> tuple[str, str]:
    """Two CloudEvent ids whose dead letters land in one shard (the shard hashes the event)."""

    def shard(event_id: str) -> int:
        letter = dead_letter_from(
            {}, TOPIC_READINGS_DEAD_LETTER, event_id, running.publisher.options.app_id, at(0)
        )
        return dead_letter_shard(letter)

    first = f"dl-{uuid.uuid4().hex}"
    again = next(i for i in (f"{first}-{n}" for n in range(1000)) if shard(i) == shard(first))
    return first, again


def test_state_survives_restarts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    running = start_alerting(write_resources(tmp_path / "res"), tmp_path / "reg")
    monkeypatch.setenv("DAPR_HTTP_PORT", str(running.publisher.http_port))
    eid = machine()
    try:
        running.publish(TOPIC_ALERTS, alert("open", equipment_id=eid))
        running.publish(TOPIC_EQUIPMENT_HEALTH, snapshot(eid, status="warning"))
        first_id, again_id = same_dead_letter_shard_ids(running)
        running.publish(
            TOPIC_READINGS_DEAD_LETTER,
            {"reason": "bad", "index": 0, "reading": {"equipment_id": eid}},
            event_id=first_id,
        )
        wait_until(lambda: len(running.get("/v1/dead-letters")) == 1, timeout=15, what="dead letter")
        wait_until(lambda: running.get("/v1/fleet")["total"] == 1, timeout=15, what="fleet")
        wait_until(lambda: alerts_of(running, eid), timeout=15, what="alert")
        ack = httpx.post(f"{running.url}/v1/alerts/{eid}:rul_low:1/ack", timeout=10)
        assert ack.status_code == 200
        before = (alerts_of(running, eid), running.get("/v1/fleet"), running.get("/v1/dead-letters"))

        running.app.stop()  # the app restarts; its sidecar stays
        running.start_app()
        running.sidecar.wait_app_ready()
        assert (alerts_of(running, eid), running.get("/v1/fleet"), running.get("/v1/dead-letters")) == before
        running.publish(TOPIC_ALERTS, alert("clear", equipment_id=eid, updated=9))
        wait_until(
            lambda: alerts_of(running, eid, state="cleared"), timeout=15, what="events flow after restart"
        )

        running.stop()  # and now the whole pod: sidecar too, same SQLite file
        running = start_alerting(running.resources, running.registry)
        monkeypatch.setenv("DAPR_HTTP_PORT", str(running.publisher.http_port))
        (record,) = alerts_of(running, eid)
        assert record["state"] == "cleared" and record["acknowledged_at"] is not None
        assert running.get("/v1/fleet") == before[1] and running.get("/v1/dead-letters") == before[2]
        running.publish(
            TOPIC_READINGS_DEAD_LETTER, {"reason": "again", "index": 2, "reading": {}}, event_id=again_id
        )
        letters = wait_until(
            lambda: len(running.get("/v1/dead-letters")) == 2 and running.get("/v1/dead-letters")
        )
        # Had the shard's sequence restarted at 0, "again" would have overwritten "bad".
        assert [(d["reason"], d["seq"]) for d in letters] == [("again", 1), ("bad", 0)]
    finally:
        running.stop()
