"""The alert lifecycle's rules: every transition and refusal, the history, reopen after a flap, the
acknowledgement rule with revisions, and ids that cannot be alerts."""

from __future__ import annotations

import itertools

import pytest

from apps.alerting.errors import AlertClosed, AlertNotFound
from apps.alerting.lifecycle import (
    HISTORY_LIMIT,
    AlertRecord,
    acknowledge,
    apply_event,
    closed_reason,
    equipment_of,
    new_changes,
    resolve,
    supersede,
)
from apps.common.contracts import Alert
from tests.unit.alerting.helpers import alert, at

OPEN = alert("open", updated=10, rul=45, revision=1, seq=101)
ESCALATE = alert("escalate", severity="critical", updated=20, rul=18, revision=2, seq=111)
CLEAR = alert("clear", severity="critical", updated=30, rul=75, revision=3, seq=121)
REOPEN = alert("reopen", severity="warning", updated=40, rul=44, revision=4, seq=131)


def replay(events: list[Alert], record: AlertRecord | None = None) -> AlertRecord:
    for e in events:
        record = apply_event(record, e)
    assert record is not None
    return record


def test_every_transition_is_in_the_history_with_who_when_what_and_note() -> None:
    record = apply_event(None, OPEN)
    assert (record.state, record.updated_at) == ("open", at(10))
    record = acknowledge(record, at(12), "ana", "looking at it")
    assert (record.state, record.acknowledged_by, record.acknowledged_at) == ("acknowledged", "ana", at(12))
    assert record.updated_at == at(12), "an acknowledgement moves updated_at"
    record = apply_event(record, ESCALATE)
    assert record.state == "open", "acknowledged at warning: the critical needs a new look"
    record = acknowledge(record, at(22), "bo", "crew dispatched")
    record = resolve(record, at(25), "bo", "bearing replaced")
    assert (record.state, record.resolved_by, record.resolved_at) == ("resolved", "bo", at(25))
    assert [(c.action, c.by, c.state, c.severity, c.note) for c in record.history] == [
        ("open", "equipment", "open", "warning", ""),
        ("acknowledge", "ana", "acknowledged", "warning", "looking at it"),
        ("escalate", "equipment", "open", "critical", ""),
        ("acknowledge", "bo", "acknowledged", "critical", "crew dispatched"),
        ("resolve", "bo", "resolved", "critical", "bearing replaced"),
    ]
    assert [c.at for c in record.history] == [at(10), at(12), at(20), at(22), at(25)]
    assert [c.reading.seq if c.reading else None for c in record.history] == [101, None, 111, None, None]
    assert record.reading is not None and record.reading.seq == 101, "the reading that raised it"


def test_refusals_say_why() -> None:
    cleared = replay([OPEN, CLEAR])
    ended = "already cleared: the machine's condition ended at 2024-01-01 00:00:30 UTC"
    with pytest.raises(AlertClosed, match=ended):
        acknowledge(cleared, at(50), "ana")
    with pytest.raises(AlertClosed, match="already cleared"):
        resolve(cleared, at(50), "ana")
    resolved = resolve(apply_event(None, OPEN), at(15), "bo", "replaced")
    with pytest.raises(AlertClosed, match="resolved by bo at 2024-01-01 00:00:15 UTC: replaced"):
        acknowledge(resolved, at(16), "ana")
    with pytest.raises(AlertClosed):
        resolve(resolved, at(16), "ana")
    assert "superseded by episode 2" in closed_reason(supersede(apply_event(None, OPEN), 2, at(60)))


def test_the_same_acknowledgement_twice_changes_nothing() -> None:
    acked = acknowledge(apply_event(None, OPEN), at(12), "ana", "on it")
    assert acknowledge(acked, at(13), "ana", "on it") == acked, "a client's retry"
    assert acknowledge(acked, at(13), "bo") == acked, "no note: nothing to add"


@pytest.mark.parametrize("order", list(itertools.permutations([OPEN, ESCALATE, CLEAR, REOPEN])))
def test_a_flap_reopens_the_alert_in_any_delivery_order(order: tuple[Alert, ...]) -> None:
    record = replay(list(order))
    assert (record.state, record.severity, record.last_event, record.revision) == (
        "open",
        "critical",
        "reopen",
        4,
    )
    assert (record.cleared_at, record.predicted_rul, record.escalated_at) == (None, 44, at(20))
    assert [c.action for c in record.history] == ["open", "escalate", "clear", "reopen"]
    assert record.reading is not None and record.reading.seq == 101


def test_a_reopen_needs_a_new_acknowledgement_and_a_clear_after_it_closes_again() -> None:
    acked = acknowledge(replay([OPEN, ESCALATE]), at(25), "ana")
    assert apply_event(acked, CLEAR).state == "cleared"
    again = replay([CLEAR, REOPEN], acked)
    assert again.state == "open" and again.acknowledged_by is None
    closed = apply_event(again, alert("clear", updated=50, rul=80, revision=5))
    assert (closed.state, closed.cleared_at) == ("cleared", at(50))


def test_an_escalation_the_operator_had_not_seen_reopens_even_if_it_happened_before_the_ack() -> None:
    """Revisions order the actor's events: the operator acknowledged what revision 1 showed (a warning);
    the escalation (revision 2, decided before the ack but delivered after it) is news to them."""
    acked = acknowledge(apply_event(None, OPEN), at(25), "ana")
    assert apply_event(acked, ESCALATE).state == "open"
    seen = acknowledge(replay([OPEN, ESCALATE]), at(25), "ana")
    reannounced = apply_event(seen, ESCALATE.model_copy(update={"message": "again"}))
    assert reannounced.state == "acknowledged", "the same event again is not news"


def test_resolved_is_final_whatever_the_machine_reports_of_that_episode() -> None:
    resolved = resolve(apply_event(None, OPEN), at(15), "bo")
    for late in (ESCALATE, CLEAR, REOPEN):
        record = apply_event(resolved, late)
        assert record.state == "resolved" and record.resolved_by == "bo"
    assert supersede(resolved, 2, at(90)) == resolved


def test_duplicates_add_nothing_and_new_changes_lists_what_a_write_adds() -> None:
    record = replay([OPEN, ESCALATE])
    assert apply_event(record, OPEN) == record and apply_event(record, ESCALATE) == record
    after = apply_event(record, CLEAR)
    assert [c.action for c in new_changes(record, after)] == ["clear"]
    assert [c.action for c in new_changes(None, record)] == ["open", "escalate"]


def test_history_is_bounded_keeping_the_first_and_the_newest() -> None:
    record = apply_event(None, OPEN)
    for n in range(HISTORY_LIMIT + 10):
        record = acknowledge(record, at(100 + n), "ana", f"note {n}")
    assert len(record.history) == HISTORY_LIMIT
    assert record.history[0].action == "open" and record.history[-1].note == f"note {HISTORY_LIMIT + 9}"


@pytest.mark.parametrize(
    "alert_id",
    [
        "x",
        "",
        "a:b",
        "e:rul_low:0",
        "e:rul_low:-1",
        "e:rul_low:one",
        "bad id:rul_low:1",
        "e:loud:1",
        "e" * 300,
    ],
)
def test_anything_that_cannot_be_an_alert_id_is_not_found(alert_id: str) -> None:
    with pytest.raises(AlertNotFound, match="no alert"):
        equipment_of(alert_id)


def test_an_alert_id_names_its_machine() -> None:
    assert equipment_of("fd001-001:rul_low:12") == "fd001-001"
    assert equipment_of("press.7:silent:1") == "press.7"
