"""One actor call for the readings of one machine that arrive close together, across requests.

Like a producer's linger: the first readings for a machine wait up to `linger_seconds` for more; what
arrives meanwhile (and whatever arrives while that machine's call is in flight) goes in the same
`Ingest` call. Each request is answered only once its readings' call has returned, i.e. once the
actor has applied and saved them: a sender is never told "accepted" for a reading the actor does not
have, and an ingestion process dying mid-linger loses only unanswered readings, which the sender
sends again (the actor drops seqs it has already applied). Calls for one machine stay one at a time
and in arrival order, so the actor sees what it saw without coalescing, in fewer calls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass, field

from apps.common.contracts import MAX_BATCH_READINGS, EquipmentIngestResult, Reading
from apps.ingestion.service import EquipmentGateway


@dataclass
class _Waiter:
    sent: list[Reading]  # this request's readings in the call (a seq already in the call is left out)
    copies: list[int]  # seqs of this request that an earlier request already put in the call
    answer: asyncio.Future[EquipmentIngestResult]


@dataclass
class _Call:
    opened: float
    readings: list[Reading] = field(default_factory=list)
    seqs: set[int] = field(default_factory=set)
    waiters: list[_Waiter] = field(default_factory=list)
    closed: bool = False  # sent (or being sent): later readings go in the next call


@dataclass
class _Machine:
    calls: deque[_Call] = field(default_factory=deque)
    worker: asyncio.Task[None] | None = None


class LingeringEquipment:
    """An EquipmentGateway that coalesces calls for one machine in front of another one."""

    def __init__(
        self, inner: EquipmentGateway, linger_seconds: float, max_readings: int = MAX_BATCH_READINGS
    ) -> None:
        self.inner = inner
        self.linger = linger_seconds
        self.max_readings = max_readings
        self._machines: dict[str, _Machine] = {}

    async def ingest(self, equipment_id: str, readings: list[Reading]) -> EquipmentIngestResult:
        loop = asyncio.get_running_loop()
        machine = self._machines.setdefault(equipment_id, _Machine())
        call = machine.calls[-1] if machine.calls else None
        if call is None or call.closed or len(call.readings) + len(readings) > self.max_readings:
            call = _Call(loop.time())
            machine.calls.append(call)
        fresh: list[Reading] = []
        for r in readings:
            if r.seq not in call.seqs:
                call.seqs.add(r.seq)
                fresh.append(r)
        call.readings += fresh
        fresh_ids = {id(r) for r in fresh}
        copies = [r.seq for r in readings if id(r) not in fresh_ids]
        waiter = _Waiter(fresh, copies, loop.create_future())
        call.waiters.append(waiter)
        if machine.worker is None:
            machine.worker = asyncio.create_task(self._drain(equipment_id, machine))
        # shield: a request whose client went away must not cancel the call the others wait for.
        return await asyncio.shield(waiter.answer)

    async def _drain(self, equipment_id: str, machine: _Machine) -> None:
        try:
            while machine.calls:
                call = machine.calls[0]
                wait = call.opened + self.linger - asyncio.get_running_loop().time()
                if wait > 0:
                    await asyncio.sleep(wait)
                call.closed = True
                try:
                    result = await self.inner.ingest(equipment_id, call.readings)
                except Exception as exc:
                    for waiter in call.waiters:
                        _settle(waiter.answer, exc=exc)
                else:
                    for waiter, share in zip(call.waiters, split(result, call.waiters), strict=True):
                        _settle(waiter.answer, share)
                machine.calls.popleft()
        except asyncio.CancelledError:
            # The process is going away: nobody is told their readings were applied.
            for call in machine.calls:
                for waiter in call.waiters:
                    _settle(waiter.answer, exc=ConnectionAbortedError("ingestion is shutting down"))
            raise
        finally:
            machine.worker = None
            if self._machines.get(equipment_id) is machine and not machine.calls:
                del self._machines[equipment_id]

    async def close(self) -> None:
        workers = [m.worker for m in self._machines.values() if m.worker is not None]
        for worker in workers:
            worker.cancel()
        for worker in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker


def split(result: EquipmentIngestResult, waiters: list[_Waiter]) -> list[EquipmentIngestResult]:
    """Each request's share of one call's answer. Refused seqs (too late, too far) go to the request
    that sent them; the rest were applied by this call or before it (duplicates). The actor counts
    duplicates but does not name them: with one request in the call, or none, the counts are exact;
    otherwise they are given to the lowest seqs first (an earlier send's resend). Either way every
    reading counted was applied, exactly once, by the actor."""
    late, far = set(result.too_late), set(result.too_far)
    taken = sorted((r.seq, i) for i, w in enumerate(waiters) for r in w.sent if r.seq not in late | far)
    duplicate_of = set(taken[: result.duplicates])
    shares = []
    for i, waiter in enumerate(waiters):
        mine = [r.seq for r in waiter.sent if r.seq not in late | far]
        dups = sum(1 for s in mine if (s, i) in duplicate_of)
        shares.append(
            EquipmentIngestResult(
                accepted=len(mine) - dups,
                # a copy shares its original's fate: refused with it, or held by the actor
                duplicates=dups + sum(1 for s in waiter.copies if s not in late | far),
                too_late=[r.seq for r in waiter.sent if r.seq in late]
                + [s for s in waiter.copies if s in late],
                too_far=[r.seq for r in waiter.sent if r.seq in far] + [s for s in waiter.copies if s in far],
                health=result.health,
            )
        )
    return shares


def _settle(
    answer: asyncio.Future[EquipmentIngestResult],
    result: EquipmentIngestResult | None = None,
    exc: BaseException | None = None,
) -> None:
    if answer.done():
        return
    if exc is not None:
        answer.set_exception(exc)
    else:
        answer.set_result(result)  # type: ignore[arg-type]
