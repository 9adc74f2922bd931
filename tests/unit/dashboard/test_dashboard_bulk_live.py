"""A bulk delivery of equipment-health (bulkSubscribe) becomes hub events, answered per entry."""

from __future__ import annotations

from typing import Any

from apps.common.bulksub import BulkEntry
from apps.common.names import TOPIC_EQUIPMENT_HEALTH
from apps.dashboard.live import Event, HealthChanged, LiveHub, deliver_bulk
from tests.unit.dashboard.fakes import snapshot


def entry(entry_id: str, data: Any) -> BulkEntry:
    return BulkEntry(entry_id, {"id": entry_id, "specversion": "1.0", "data": data})


def test_bulk_entries_are_published_or_dropped_one_by_one() -> None:
    hub = LiveHub()
    entries = [
        entry("a", snapshot("m-1").model_dump(mode="json")),
        entry("b", {"not": "a snapshot"}),
        BulkEntry("c", "base64 text, not a CloudEvent"),
        entry("d", snapshot("m-2").model_dump(mode="json")),
    ]
    # Nobody listens: nothing decoded, all acknowledged.
    assert deliver_bulk(hub, TOPIC_EQUIPMENT_HEALTH, entries) == [(e.entry_id, "SUCCESS") for e in entries]
    seen: list[Event] = []
    hub.subscribe(seen.append)
    statuses = deliver_bulk(hub, TOPIC_EQUIPMENT_HEALTH, entries)
    assert statuses == [("a", "SUCCESS"), ("b", "DROP"), ("c", "DROP"), ("d", "SUCCESS")]
    assert [e.snapshot.equipment_id for e in seen if isinstance(e, HealthChanged)] == ["m-1", "m-2"]
