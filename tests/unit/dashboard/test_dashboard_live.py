"""Deliveries become hub events; a Coalescer pushes the latest per key at most once per interval."""

from __future__ import annotations

import asyncio
import json

from apps.common.names import TOPIC_ALERTS, TOPIC_EQUIPMENT_HEALTH, TOPIC_MODEL_UPDATES
from apps.dashboard.live import AlertChanged, Coalescer, Event, HealthChanged, LiveHub, ModelChanged, deliver
from tests.unit.dashboard.fakes import alert_event, at, eventually, snapshot


def body(data: object, as_text: bool = False) -> bytes:
    return json.dumps({"id": "1", "data": json.dumps(data) if as_text else data}).encode()


def test_deliveries_decode_per_topic_and_skip_work_with_no_page_open() -> None:
    hub = LiveHub()
    seen: list[Event] = []
    health = body(snapshot("m-1").model_dump(mode="json"))
    assert deliver(hub, TOPIC_EQUIPMENT_HEALTH, health) == "SUCCESS"  # nobody listens: not even decoded
    unsubscribe = hub.subscribe(seen.append)
    assert deliver(hub, TOPIC_EQUIPMENT_HEALTH, health) == "SUCCESS"
    assert deliver(hub, TOPIC_ALERTS, body(alert_event().model_dump(mode="json"), as_text=True)) == "SUCCESS"
    assert (
        deliver(hub, TOPIC_MODEL_UPDATES, body({"name": "m", "version": 2, "promoted": False})) == "SUCCESS"
    )
    assert [type(e) for e in seen] == [HealthChanged, AlertChanged, ModelChanged]
    assert deliver(hub, TOPIC_ALERTS, body({"id": "x"})) == "DROP"
    assert deliver(hub, TOPIC_EQUIPMENT_HEALTH, b"[1, 2]") == "DROP"
    unsubscribe()
    assert hub.listening == 0


def test_a_failing_listener_does_not_starve_the_others() -> None:
    hub = LiveHub()
    seen: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("page gone")

    hub.subscribe(broken)
    hub.subscribe(seen.append)
    hub.publish(HealthChanged(snapshot()))
    assert len(seen) == 1


async def test_coalescer_flushes_latest_per_machine_once_per_interval() -> None:
    flushes: list[list[Event]] = []
    coalescer = Coalescer(flushes.append, interval=0.05)
    for i in range(100):
        coalescer(HealthChanged(snapshot("m-1", updated=i)))
        coalescer(HealthChanged(snapshot("m-2", updated=i)))
    await eventually(lambda: flushes, what="a flush")
    assert len(flushes) == 1
    latest = [(e.snapshot.equipment_id, e.snapshot.updated_at) for e in flushes[0]]  # type: ignore[union-attr]
    assert latest == [("m-1", at(99)), ("m-2", at(99))]
    coalescer(HealthChanged(snapshot("m-1", updated=200)))
    await eventually(lambda: len(flushes) == 2, what="a second flush for a later event")


async def test_coalescer_holds_until_released_and_stops_when_closed() -> None:
    flushes: list[list[Event]] = []
    coalescer = Coalescer(flushes.append, interval=0.01)
    coalescer.hold()
    coalescer(HealthChanged(snapshot("m-1")))
    await asyncio.sleep(0.05)  # a held coalescer must not flush: nothing to wait for but time
    assert flushes == []
    coalescer.release()
    await eventually(lambda: len(flushes) == 1, what="flush after release")
    coalescer.close()
    coalescer(HealthChanged(snapshot("m-2")))
    await asyncio.sleep(0.05)
    assert len(flushes) == 1
