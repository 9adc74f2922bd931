"""An actor's calls run one at a time in the app, even when the sidecar lets a second one in.

The sidecar frees an actor's turn when an attempt times out and tries again while the first attempt
may still be running in the app; `one_turn` keeps the second attempt waiting for the first."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

from apps.common.actor_interface import EquipmentActorInterface
from apps.common.profiles import TURBOFAN
from apps.equipment.actor import EquipmentActor
from apps.equipment.alarms import AlertTransition
from tests.unit.equipment.test_reminder_publishes import T0, Published, Writes, an_actor
from vigil.fleet import VALUE_COLUMNS


def readings_json(seq: int) -> str:
    values = {c: float(TURBOFAN.channels.get(c, (0.0, 0.0))[0]) for c in VALUE_COLUMNS}
    at = (T0 + timedelta(seconds=seq)).isoformat()
    return json.dumps(
        [{"equipment_id": "m-1", "profile": "turbofan", "timestamp": at, "seq": seq, "values": values}]
    )


async def settle_loop() -> None:
    # Every task that can run without waiting on I/O or a lock gets to run: a second turn that is
    # not held back reaches `_catch_up` within these steps (validation and apply are synchronous).
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_second_call_waits_until_the_turn_in_progress_ends(clock: list[float]) -> None:
    actor = an_actor(Published(), Writes(), clock)
    gate = asyncio.Event()
    entered: list[int] = []

    async def slow_catch_up(now: float) -> list[AlertTransition]:
        entered.append(len(entered))
        await gate.wait()  # the first attempt, still running when the sidecar gave up on it
        return []

    actor._catch_up = slow_catch_up  # type: ignore[method-assign]
    first = asyncio.create_task(actor.ingest(readings_json(2)))
    second = asyncio.create_task(actor.ingest(readings_json(3)))
    await settle_loop()
    assert entered == [0], "the second call ran while the first held the turn"
    assert not second.done()
    gate.set()
    results = [json.loads(r) for r in await asyncio.wait_for(asyncio.gather(first, second), 10)]
    assert entered == [0, 1]
    assert [r["accepted"] for r in results] == [1, 1]


def test_every_actor_method_and_the_reminder_take_the_turn() -> None:
    methods = [n for n, v in vars(EquipmentActorInterface).items() if callable(v) and not n.startswith("_")]
    assert methods, "the interface's methods"
    for name in [*methods, "receive_reminder"]:
        assert getattr(EquipmentActor, name).__wrapped__ is not None, f"{name} does not take the turn"
