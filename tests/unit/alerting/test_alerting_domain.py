"""Pure alerting rules: lifecycle, idempotence, delivery order, supersession, fleet, dead letters."""

from __future__ import annotations

import base64
import itertools
import json

import pytest

from apps.alerting.domain import dead_letter_from, decode_envelope, is_newer, recent_seqs, summarize_fleet
from apps.alerting.errors import AlertClosed, MalformedEvent
from apps.alerting.lifecycle import (
    AlertFilter,
    AlertRecord,
    AlertSummary,
    acknowledge,
    apply_event,
    newest_first,
    parse_alert,
    prune,
)
from tests.unit.alerting.helpers import alert, at, snapshot


def replay(events: list) -> AlertRecord:  # type: ignore[type-arg]
    record = None
    for e in events:
        record = apply_event(record, e)
    assert record is not None
    return record


OPEN = alert("open", severity="warning", updated=0, rul=45)
ESCALATE = alert("escalate", severity="critical", updated=10, rul=18)
CLEAR = alert("clear", severity="critical", updated=20, rul=75)


def test_open_creates_an_open_alert_with_the_event_content() -> None:
    record = apply_event(None, OPEN)
    assert record.state == "open" and record.severity == "warning" and record.last_event == "open"
    assert record.id == "engine-001:rul_low:1" and record.top_sensors and record.predicted_rul == 45


def test_escalation_updates_the_same_alert() -> None:
    record = replay([OPEN, ESCALATE])
    assert record.id == OPEN.id and record.severity == "critical" and record.state == "open"
    assert record.escalated_at == at(10) and record.predicted_rul == 18 and record.raised_at == at(0)


@pytest.mark.parametrize("reverse", [False, True])
def test_open_and_escalate_with_one_timestamp_describe_the_critical(reverse: bool) -> None:
    """One actor call can cross both thresholds: both events carry the same updated_at."""
    same_time = [
        alert("open", severity="warning", updated=5, rul=45),
        alert("escalate", severity="critical", updated=5, rul=4),
    ]
    record = replay(same_time[::-1] if reverse else same_time)
    assert (record.severity, record.last_event, record.predicted_rul) == ("critical", "escalate", 4)
    assert "critical" in record.message


def test_clear_is_terminal() -> None:
    record = replay([OPEN, ESCALATE, CLEAR])
    assert record.state == "cleared" and record.cleared_at == at(20) and record.cleared_reason == "cleared"


def test_duplicates_change_nothing() -> None:
    once = replay([OPEN, ESCALATE])
    assert apply_event(once, ESCALATE) == once
    assert apply_event(once, OPEN) == once
    assert replay([OPEN, OPEN, ESCALATE, ESCALATE, OPEN]) == once


@pytest.mark.parametrize("order", list(itertools.permutations([OPEN, ESCALATE, CLEAR])))
def test_any_delivery_order_converges(order: tuple) -> None:  # type: ignore[type-arg]
    record = replay(list(order))
    assert record.state == "cleared", "a late open/escalate never reopens a cleared alert"
    assert record.severity == "critical"
    assert record.updated_at == at(20) and record.predicted_rul == 75 and record.last_event == "clear"
    assert record.escalated_at == at(10)


def test_late_escalate_after_clear_keeps_cleared_but_records_severity() -> None:
    record = replay([OPEN, CLEAR.model_copy(update={"severity": "warning"}), ESCALATE])
    assert record.state == "cleared" and record.severity == "critical"


def test_acknowledge_then_clear() -> None:
    acked = acknowledge(apply_event(None, OPEN), at(5), "ops")
    assert acked.state == "acknowledged" and acked.acknowledged_by == "ops" and acked.acknowledged_at == at(5)
    assert acknowledge(acked, at(6), "someone-else") == acked, "acknowledging twice keeps the first"
    noted = acknowledge(acked, at(7), "someone-else", "on my way")
    assert noted.acknowledged_by == "ops" and [(c.action, c.by, c.note) for c in noted.history[1:]] == [
        ("acknowledge", "ops", ""),
        ("acknowledge", "someone-else", "on my way"),
    ], "a second acknowledgement with a note is kept as a note"
    assert apply_event(acked, CLEAR).state == "cleared"


def test_acknowledging_a_cleared_alert_is_refused() -> None:
    with pytest.raises(AlertClosed, match="already cleared"):
        acknowledge(replay([OPEN, CLEAR]), at(30), "ops")


def test_escalation_after_ack_reopens_but_a_late_one_does_not() -> None:
    acked = acknowledge(apply_event(None, OPEN), at(5), "ops")
    assert apply_event(acked, ESCALATE).state == "open", "acked at warning; critical needs a new look"
    acked_late = acknowledge(apply_event(None, OPEN), at(15), "ops")
    late = apply_event(acked_late, ESCALATE)  # escalated at 10, before the ack at 15
    assert late.state == "acknowledged" and late.severity == "critical"


def test_non_escalating_event_keeps_an_acknowledgement() -> None:
    acked = acknowledge(replay([OPEN, ESCALATE]), at(12), "ops")
    assert apply_event(acked, alert("open", severity="critical", updated=13)).state == "acknowledged"


def test_parse_alert_rejects_ids_that_disagree_with_their_fields() -> None:
    data = OPEN.model_dump(mode="json") | {"id": "engine-001:rul_low:2"}
    with pytest.raises(MalformedEvent, match="does not match"):
        parse_alert(data)
    with pytest.raises(MalformedEvent, match="severity"):
        parse_alert(OPEN.model_dump(mode="json") | {"severity": "meh"})
    with pytest.raises(MalformedEvent):
        parse_alert("not an object")
    assert parse_alert(OPEN.model_dump(mode="json")) == OPEN


def summary(state: str, raised: float, updated: float, eid: str = "e", episode: int = 1) -> AlertSummary:
    return AlertSummary(
        equipment_id=eid,
        kind="rul_low",
        episode=episode,
        severity="warning",
        state=state,  # type: ignore[arg-type]
        raised_at=at(raised),
        updated_at=at(updated),
    )


def test_newest_first_and_filters() -> None:
    index = {
        "a": summary("open", 1, 1, eid="x"),
        "b": summary("cleared", 3, 4, eid="y"),
        "c": summary("acknowledged", 2, 9, eid="x"),
    }
    assert newest_first(index, AlertFilter()) == ["b", "c", "a"]
    assert newest_first(index, AlertFilter(equipment_id="x")) == ["c", "a"]
    assert newest_first(index, AlertFilter(state="cleared")) == ["b"]
    assert newest_first(index, AlertFilter(severity="critical")) == []
    assert newest_first(index, AlertFilter(), limit=1) == ["b"]


def test_prune_forgets_only_the_oldest_cleared_alerts() -> None:
    index = {
        "open-old": summary("open", 0, 0),
        "cleared-old": summary("cleared", 1, 1),
        "cleared-new": summary("cleared", 2, 5),
        "acked": summary("acknowledged", 3, 3),
    }
    assert prune(index, 4) == []
    assert prune(index, 3) == ["cleared-old"]
    assert prune(index, 1) == ["cleared-old", "cleared-new"], "open alerts are never forgotten"


def test_fleet_keeps_the_newest_snapshot_and_counts_every_status() -> None:
    old, new = snapshot(updated=1), snapshot(updated=2, status="warning")
    assert is_newer(None, old) and is_newer(old, new) and not is_newer(new, old) and not is_newer(new, new)
    fleet = summarize_fleet([snapshot("b", status="critical"), snapshot("a"), snapshot("c")])
    assert fleet.total == 3 and [m.equipment_id for m in fleet.machines] == ["a", "b", "c"]
    expected = {"ok": 2, "warning": 0, "critical": 1, "silent": 0, "stale": 0, "warming_up": 0, "down": 0}
    assert fleet.counts == expected
    only = summarize_fleet([snapshot("b", status="critical"), snapshot("a")], status="critical")
    assert only.total == 2 and [m.equipment_id for m in only.machines] == ["b"]


def test_dead_letter_from_ingestion_payload_and_from_dapr_routing() -> None:
    reading = {"equipment_id": "engine-7", "seq": 3, "values": {"sensor_99": 1.0}}
    payload = {"reason": "unknown sensor", "index": 2, "source": "http", "reading": reading}
    letter = dead_letter_from(
        payload | {"rejected_at": "2024-01-01T00:00:00+00:00"}, "t", "ev1", "ingestion", at(1)
    )
    assert letter.index == 2 and letter.reading == reading and letter.equipment_id == "engine-7"
    assert letter.reason == "unknown sensor" and letter.source == "http" and letter.rejected_at == at(0)
    routed = dead_letter_from({"readings": [reading]}, "t", "ev2", "gateway", at(1))
    assert routed.index is None and routed.reading == {"readings": [reading]} and "Dapr" in routed.reason
    weird = dead_letter_from(payload | {"index": "two", "rejected_at": 5}, "t", None, None, at(1))
    assert weird.index is None and weird.rejected_at is None, "odd fields never lose the letter"


def test_ring_buffer_sequence_numbers() -> None:
    assert recent_seqs(0, 10, 5) == []
    assert recent_seqs(3, 10, 100) == [2, 1, 0]
    assert recent_seqs(25, 10, 100) == list(range(24, 14, -1)), "only the last `retention` exist"
    assert recent_seqs(25, 10, 3) == [24, 23, 22]


def test_decode_envelope_handles_json_text_and_base64_data() -> None:
    event = {"id": "1", "source": "equipment", "topic": "alerts", "data": {"a": 1}}
    assert decode_envelope(json.dumps(event).encode()).data == {"a": 1}
    as_text = event | {"data": json.dumps({"a": 1})}
    assert decode_envelope(json.dumps(as_text).encode()).data == {"a": 1}
    raw = {"id": "2", "data_base64": base64.b64encode(b'{"b": 2}').decode()}
    assert decode_envelope(json.dumps(raw).encode()).data == {"b": 2}
    assert decode_envelope(json.dumps(event | {"data": "plain"}).encode()).data == "plain"
    for bad in (b"{not json", b"[1, 2]", b"\xff\xfe"):
        with pytest.raises(MalformedEvent):
            decode_envelope(bad)
