"""The silence-check reminder re-publishes a machine's health only when none went out since the
previous check; a change of status is still published at once, and nothing unchanged is written."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from dapr.actor import ActorId
from pydantic import BaseModel

from apps.common.contracts import Reading
from apps.common.names import SILENCE_REMINDER, TOPIC_EQUIPMENT_HEALTH
from apps.common.profiles import TURBOFAN
from apps.equipment.actor import EquipmentActor
from apps.equipment.domain import EquipmentState
from apps.equipment.ports import ActorDeps
from apps.equipment.settings import EquipmentSettings
from vigil.fleet import VALUE_COLUMNS

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Published:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    async def publish(self, topic: str, event: BaseModel | dict) -> None:
        self.events.append((topic, event))

    def health(self) -> int:
        return sum(1 for topic, _ in self.events if topic == TOPIC_EQUIPMENT_HEALTH)


class NoInference:
    async def predict(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("nothing is owed in these tests")

    async def served_card(self, model_name: str) -> Any:
        raise AssertionError("nothing is owed in these tests")


class Writes:
    """Stands for the SDK's actor state manager: counts the state written."""

    def __init__(self) -> None:
        self.saved: list[str] = []
        self._pending: str | None = None

    async def set_state(self, key: str, value: str) -> None:
        self._pending = value

    async def save_state(self) -> None:
        assert self._pending is not None
        self.saved.append(self._pending)


class Reminders:
    """Stands for the SDK's `register_reminder`: the (due, period) of each registration, in seconds."""

    def __init__(self) -> None:
        self.registered: list[tuple[float, float]] = []

    async def __call__(self, name: str, state: bytes, due: timedelta, period: timedelta) -> None:
        assert name == SILENCE_REMINDER
        self.registered.append((due.total_seconds(), period.total_seconds()))


def an_actor(published: Published, writes: Writes, clock: list[float]) -> EquipmentActor:
    settings = EquipmentSettings(
        health_publish_seconds=5, silence_check_seconds=30, silence_after_seconds=600
    )
    actor = EquipmentActor.__new__(EquipmentActor)  # no SDK runtime: only what the methods use
    actor.id = ActorId("m-1")
    actor._deps = ActorDeps(NoInference(), published, settings, started_at=0.0)  # type: ignore[arg-type]
    actor._state_manager = writes  # type: ignore[assignment]
    actor._state = EquipmentState.new("m-1", actor._profiles()["turbofan"])
    actor._last_health_at = 0.0
    actor._last_status = None
    actor._saved = None
    actor._turn = asyncio.Lock()
    actor._check_stretched = False
    actor.register_reminder = Reminders()  # type: ignore[method-assign]
    reading = Reading(
        equipment_id="m-1",
        profile="turbofan",
        timestamp=T0 + timedelta(seconds=1),
        seq=1,
        values={c: float(TURBOFAN.channels.get(c, (0.0, 0.0))[0]) for c in VALUE_COLUMNS},
    )
    actor._state.apply_readings([reading], clock[0])
    actor._state.backlog.settle(1)  # type: ignore[union-attr]  # as if predicted: nothing owed
    return actor


async def remind(actor: EquipmentActor) -> None:
    every = timedelta(seconds=30)
    await actor.receive_reminder(SILENCE_REMINDER, b"", every, every)


async def test_a_check_republishes_health_only_when_none_went_out_since_the_previous_check(
    clock: list[float],
) -> None:
    published, writes = Published(), Writes()
    actor = an_actor(published, writes, clock)
    await actor._publish_health(clock[0])  # the reading's own snapshot
    assert published.health() == 1
    clock[0] += 10  # past the 5 s health interval, within the 30 s check period
    await remind(actor)
    assert published.health() == 1, "a snapshot went out 10 s ago: the check stays quiet"
    clock[0] += 25  # 35 s without one
    await remind(actor)
    assert published.health() == 2
    written = len(writes.saved)
    clock[0] += 30
    await remind(actor)
    assert published.health() == 3 and len(writes.saved) == written, "nothing changed: not written"


async def test_a_check_that_finds_the_machine_silent_publishes_at_once(clock: list[float]) -> None:
    published, writes = Published(), Writes()
    actor = an_actor(published, writes, clock)
    await actor._publish_health(clock[0])
    clock[0] += 601  # past the silence threshold; the last snapshot 601 s old
    await remind(actor)
    assert actor._state is not None and actor._state.status() == "silent"
    assert published.health() == 2 and any(t != TOPIC_EQUIPMENT_HEALTH for t, _ in published.events)
    assert len(writes.saved) == 1, "the silent episode is written"
    clock[0] += 1
    await remind(actor)  # silent already: no change, and a snapshot went out 1 s ago
    assert published.health() == 2
