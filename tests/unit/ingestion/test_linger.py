"""The linger window: readings for one machine from several requests go in one actor call; each
request is answered only after that call returned (the actor applied them), with its own share of
the answer; a failed call or a dying ingestion acknowledges nothing, and a resend applies once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from apps.common.contracts import EquipmentIngestResult, HealthSnapshot, Reading
from apps.ingestion.linger import LingeringEquipment
from tests.unit.ingestion.test_validation import good


async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Let the event loop run until `condition` holds; fail naming `what` after `timeout` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"not met after {timeout} s: {what}")
        await asyncio.sleep(0.005)


def reading(seq: int, eq: str = "m1") -> Reading:
    return Reading.model_validate(good(seq=seq, eq=eq))


class GatedActor:
    """Stands for the EquipmentActor: applies each seq once (later copies are duplicates, seqs
    listed in `too_late` are refused), and holds each call until the test opens the gate."""

    def __init__(self, too_late: set[int] | None = None) -> None:
        self.gate = asyncio.Event()
        self.calls: list[tuple[str, list[int]]] = []
        self.applied: dict[str, list[int]] = {}
        self.too_late = too_late or set()
        self.fail_next = False

    async def ingest(self, equipment_id: str, readings: list[Reading]) -> EquipmentIngestResult:
        self.calls.append((equipment_id, [r.seq for r in readings]))
        await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("actor unavailable")
        applied = self.applied.setdefault(equipment_id, [])
        late = [r.seq for r in readings if r.seq in self.too_late]
        fresh = [r.seq for r in readings if r.seq not in applied and r.seq not in self.too_late]
        applied += fresh
        health = HealthSnapshot(
            equipment_id=equipment_id,
            profile="turbofan",
            last_seq=max(applied, default=0),
            readings_applied=len(applied),
            duplicates=0,
            status="ok",
            updated_at=datetime.now(UTC),
        )
        return EquipmentIngestResult(
            accepted=len(fresh),
            duplicates=len(readings) - len(fresh) - len(late),
            too_late=late,
            health=health,
        )


async def test_requests_for_one_machine_share_one_call_and_are_answered_after_it() -> None:
    actor = GatedActor()
    linger = LingeringEquipment(actor, linger_seconds=0.05)
    first = asyncio.create_task(linger.ingest("m1", [reading(1), reading(2)]))
    second = asyncio.create_task(linger.ingest("m1", [reading(3)]))
    other = asyncio.create_task(linger.ingest("m2", [reading(1, "m2")]))
    await wait_until(lambda: len(actor.calls) == 2, timeout=5, what="one call per machine")
    assert sorted(actor.calls) == [("m1", [1, 2, 3]), ("m2", [1])]
    await asyncio.sleep(0)  # the call is in flight and not returned: nobody may be answered yet
    assert not (first.done() or second.done() or other.done())
    actor.gate.set()
    a, b, c = await asyncio.gather(first, second, other)
    assert (a.accepted, a.duplicates, b.accepted, b.duplicates, c.accepted) == (2, 0, 1, 0, 1)
    assert a.health.last_seq == b.health.last_seq == 3


async def test_readings_arriving_during_a_call_go_in_the_next_one_in_order() -> None:
    actor = GatedActor()
    linger = LingeringEquipment(actor, linger_seconds=0.0)
    first = asyncio.create_task(linger.ingest("m1", [reading(1)]))
    await wait_until(lambda: len(actor.calls) == 1, timeout=5, what="the first call")
    later = [asyncio.create_task(linger.ingest("m1", [reading(s)])) for s in (2, 3, 4)]
    await asyncio.sleep(0.01)
    assert len(actor.calls) == 1  # one call per machine at a time
    actor.gate.set()
    results = await asyncio.gather(first, *later)
    assert actor.calls == [("m1", [1]), ("m1", [2, 3, 4])]
    assert [r.accepted for r in results] == [1, 1, 1, 1]


async def test_copies_and_refusals_are_told_to_the_request_that_sent_them() -> None:
    actor = GatedActor(too_late={5})
    actor.applied["m1"] = [1]  # applied by an earlier call: a resend of it is a duplicate
    linger = LingeringEquipment(actor, linger_seconds=0.05)
    resend = asyncio.create_task(linger.ingest("m1", [reading(1), reading(2)]))
    racing = asyncio.create_task(linger.ingest("m1", [reading(2), reading(5)]))  # 2 again, 5 too late
    await wait_until(lambda: len(actor.calls) == 1, timeout=5, what="the merged call")
    assert actor.calls == [("m1", [1, 2, 5])]  # a seq goes to the actor once
    actor.gate.set()
    a, b = await asyncio.gather(resend, racing)
    assert (a.accepted, a.duplicates, a.too_late) == (1, 1, [])
    assert (b.accepted, b.duplicates, b.too_late) == (0, 1, [5])
    assert actor.applied["m1"] == [1, 2]


async def test_a_failed_call_acknowledges_none_of_its_requests_and_a_resend_applies_once() -> None:
    actor = GatedActor()
    actor.fail_next = True
    actor.gate.set()
    linger = LingeringEquipment(actor, linger_seconds=0.02)
    outcomes = await asyncio.gather(
        linger.ingest("m1", [reading(1)]), linger.ingest("m1", [reading(2)]), return_exceptions=True
    )
    assert all(isinstance(o, RuntimeError) for o in outcomes) and actor.applied == {}
    again = await asyncio.gather(linger.ingest("m1", [reading(1)]), linger.ingest("m1", [reading(2)]))
    assert [r.accepted for r in again] == [1, 1] and actor.applied == {"m1": [1, 2]}


async def test_ingestion_going_away_mid_linger_acknowledges_nothing_and_loses_nothing() -> None:
    """A crash before the call returns: the senders get no acknowledgement, so they send again; the
    actor then has every reading exactly once, whether or not the lost call had reached it."""
    actor = GatedActor()
    linger = LingeringEquipment(actor, linger_seconds=0.05)
    pending = [asyncio.create_task(linger.ingest("m1", [reading(s)])) for s in (1, 2)]
    await wait_until(lambda: len(actor.calls) == 1, timeout=5, what="the call in flight")
    await linger.close()  # the process stops with the call in flight: no answer was sent
    for task in pending:
        with pytest.raises((ConnectionAbortedError, asyncio.CancelledError)):
            await task
    actor.gate.set()
    restarted = LingeringEquipment(actor, linger_seconds=0.05)
    results = await asyncio.gather(*(restarted.ingest("m1", [reading(s)]) for s in (1, 2, 3)))
    assert sum(r.accepted + r.duplicates for r in results) == 3
    assert actor.applied == {"m1": [1, 2, 3]}


async def test_a_call_never_exceeds_the_batch_limit() -> None:
    actor = GatedActor()
    actor.gate.set()
    linger = LingeringEquipment(actor, linger_seconds=0.05, max_readings=3)
    results = await asyncio.gather(
        *(linger.ingest("m1", [reading(2 * i), reading(2 * i + 1)]) for i in range(3))
    )
    assert [len(seqs) for _, seqs in actor.calls] == [2, 2, 2]
    assert sum(r.accepted for r in results) == 6
