"""A machine's new life (a failure, maintenance or replacement event) resolves its open alerts: the
actor's `resolve` event, which alerting records as final, by the equipment, with the event as note."""

from __future__ import annotations

import pytest

from apps.alerting import lifecycle
from apps.alerting.errors import AlertClosed
from apps.dashboard.domain import merge_alert_event
from tests.unit.alerting.helpers import alert, at


def resolved_by_maintenance(revision: int = 2, updated: float = 20) -> lifecycle.AlertRecord:
    record = lifecycle.apply_event(None, alert("open", revision=1, updated=10))
    event = alert("resolve", revision=revision, updated=updated).model_copy(
        update={
            "message": "engine-001: predicted RUL 42 cycles (warning); resolved: maintenance after seq 70"
        }
    )
    return lifecycle.apply_event(record, event)


def test_the_machines_resolve_closes_the_alert_for_good_with_the_reason() -> None:
    record = resolved_by_maintenance()
    assert (record.state, record.resolved_by, record.resolved_at) == ("resolved", "equipment", at(20))
    last = record.history[-1]
    assert (last.action, last.by, last.state) == ("resolve", "equipment", "resolved")
    assert "maintenance after seq 70" in last.note
    assert "maintenance after seq 70" in lifecycle.closed_reason(record)
    with pytest.raises(AlertClosed):
        lifecycle.acknowledge(record, at(30), "ana")
    # Redelivered, or delivered before the open: the same record.
    assert lifecycle.apply_event(record, alert("open", revision=1, updated=10)) == record
    again = resolved_by_maintenance()
    assert again.state == "resolved" and len(again.history) == len(record.history)


def test_an_operators_resolve_is_still_not_the_machines_event() -> None:
    record = lifecycle.apply_event(None, alert("open", revision=1, updated=10))
    record = lifecycle.resolve(record, at(15), "ana", "checked")
    assert [c.from_machine for c in record.history] == [True, False]
    assert record.resolved_by == "ana"


def test_the_dashboard_shows_the_machines_resolve_at_once() -> None:
    opened = merge_alert_event(None, alert("open", revision=1, updated=10))
    info = merge_alert_event(opened, alert("resolve", revision=2, updated=20))
    assert (info.state, info.resolved_by) == ("resolved", "equipment")
    assert merge_alert_event(info, alert("open", revision=1, updated=10)) == info  # late: ignored
