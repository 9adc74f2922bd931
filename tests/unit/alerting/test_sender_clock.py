"""Alerting does not trust a sender's clock (issue 10): snapshots are ordered by the actor's own
revision, alert events by their episode revision, and a time further ahead than the allowed skew is
taken as received (logged, counted) instead of sorting after everything that really comes later."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from apps.alerting.domain import Envelope, clamp_future, is_newer
from apps.alerting.lifecycle import AlertFilter
from apps.alerting.service import AlertingService, Outcome
from apps.common.contracts import Reading
from apps.common.metrics import CLOCK_AHEAD
from apps.common.profiles import TURBOFAN
from apps.equipment.codec import decode_state, encode_state
from apps.equipment.domain import EquipmentState
from tests.unit.alerting.fakes import FakeMachines, InMemoryAlertingRepository
from tests.unit.alerting.helpers import T0, alert, at, snapshot

NOW = at(3600)  # alerting's clock in these tests
Y2030 = datetime(2030, 1, 1, tzinfo=UTC)
SKEW = timedelta(minutes=5)


@pytest.fixture
def repo() -> InMemoryAlertingRepository:
    return InMemoryAlertingRepository()


@pytest.fixture
def service(repo: InMemoryAlertingRepository) -> AlertingService:
    return AlertingService(repo, FakeMachines(), clock=lambda: NOW, max_clock_skew=SKEW)


def delivered(item: object, topic: str) -> Envelope:
    return Envelope(json.loads(item.model_dump_json()), "ev-1", "equipment", topic)  # type: ignore[attr-defined]


def forged_ok() -> object:
    """The issue's forgery: "ok, RUL 300", stamped 2030, without a revision."""
    return snapshot(status="ok", predicted_rul=300.0).model_copy(update={"updated_at": Y2030})


async def test_a_snapshot_stamped_2030_no_longer_pins_the_machine_and_a_later_real_one_wins(
    service: AlertingService,
) -> None:
    before = CLOCK_AHEAD.labels(topic="equipment-health")._value.get()
    assert await service.on_health(delivered(forged_ok(), "equipment-health"), "equipment-health") == (
        Outcome.SUCCESS
    )
    (kept,) = (await service.fleet.view()).machines
    assert kept.updated_at == NOW, "the future time is taken as received"
    assert service.clock_skew_clamped["equipment-health"] == 1
    assert CLOCK_AHEAD.labels(topic="equipment-health")._value.get() == before + 1  # on /metrics
    real = snapshot(status="critical", predicted_rul=12.0, updated=3601, revision=7)
    await service.on_health(delivered(real, "equipment-health"), "equipment-health")
    (kept,) = (await service.fleet.view()).machines
    assert (kept.status, kept.predicted_rul, kept.revision) == ("critical", 12.0, 7)
    assert service.clock_skew_clamped["equipment-health"] == 1, "a time within the skew is not counted"


def test_a_numbered_snapshot_beats_a_2030_one_stored_before_the_fix() -> None:
    """A snapshot kept before alerting clamped times (2030, no revision) gives way to the actor's next."""
    real = snapshot(status="critical", updated=10, revision=1)
    assert is_newer(forged_ok(), real)  # type: ignore[arg-type]
    assert not is_newer(real, forged_ok())  # type: ignore[arg-type]


def test_snapshots_are_ordered_by_revision_not_by_their_clock() -> None:
    ahead = snapshot(status="ok", revision=5).model_copy(update={"updated_at": Y2030})
    later = snapshot(status="warning", updated=0, revision=6)
    assert is_newer(ahead, later) and not is_newer(later, ahead)
    older_but_late_stamped = snapshot(status="ok", revision=4).model_copy(update={"updated_at": Y2030})
    assert not is_newer(later, older_but_late_stamped)


async def test_an_alert_event_stamped_2030_is_taken_as_received(service: AlertingService) -> None:
    forged = alert("open", severity="critical", revision=1, seq=5)
    forged = forged.model_copy(
        update={
            "raised_at": Y2030,
            "updated_at": Y2030,
            "reading": forged.reading.model_copy(update={"timestamp": Y2030}),  # type: ignore[union-attr]
        }
    )
    assert await service.on_alert(delivered(forged, "alerts"), "alerts") == Outcome.SUCCESS
    (record,) = await service.list_alerts(AlertFilter())
    assert record.raised_at == record.updated_at == NOW
    assert record.reading is not None and record.reading.timestamp == NOW
    assert service.clock_skew_clamped["alerts"] == 1
    # The episode's next event (revision 2) decides, whatever the times say.
    await service.apply_alert(alert("clear", severity="critical", updated=3000, revision=2))
    assert (await service.get_alert(record.id)).state == "cleared"


def test_clamp_future_leaves_times_within_the_skew_alone() -> None:
    near = snapshot().model_copy(update={"updated_at": NOW + SKEW})
    assert clamp_future(near, NOW, SKEW) == (near, [])
    far = snapshot(last_reading_at=NOW + SKEW + timedelta(seconds=1)).model_copy(update={"updated_at": T0})
    clamped, fields = clamp_future(far, NOW, SKEW)
    assert fields == ["last_reading_at"] and clamped.last_reading_at == NOW and clamped.updated_at == T0


def test_the_actor_numbers_every_change_of_its_state_and_keeps_the_number() -> None:
    state = EquipmentState.new("engine-7", TURBOFAN)
    reading = Reading(
        equipment_id="engine-7",
        timestamp=T0,
        seq=1,
        # Every channel the profile reads (its informative sensors, and operating settings if it uses them).
        values=dict.fromkeys(getattr(TURBOFAN, "required_channels", TURBOFAN.informative_sensors), 1.0),
    )
    assert state.snapshot(now=0.0).revision == 0
    state.apply_readings([reading], now=1.0)
    first = state.snapshot(now=1.0).revision
    state.apply_readings([reading], now=0.5)  # a duplicate, and a clock that went back
    second = state.snapshot(now=0.5)
    assert second.revision > first >= 1 and second.duplicates == 1
    assert is_newer(state.snapshot(now=1.0), second) is False, "same state, same revision: not newer"
    restored = decode_state("engine-7", json.loads(json.dumps(encode_state(state))))
    assert restored.revision == state.revision
