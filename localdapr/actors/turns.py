"""Turn-based concurrency: one call at a time per actor id, with optional reentrancy.

The Python SDK has no per-actor lock (contract Q12): daprd serialises every callback (method,
reminder, timer, deactivation) per actor id, so the hosting sidecar must. Calls for different ids
never wait for each other. With reentrancy enabled, a call carrying the reentrancy id of the call
that holds the turn (actor A -> B -> A) enters instead of deadlocking, up to `maxStackDepth`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from localdapr.errors import DaprError

if TYPE_CHECKING:
    from localdapr.actors.reminders import Scheduled


def max_stack_depth_exceeded() -> DaprError:
    return DaprError(
        "ERR_ACTOR_MAX_STACK_DEPTH_EXCEEDED",
        "maximum stack depth exceeded",
        500,
        grpc.StatusCode.INTERNAL,
    )


@dataclass(eq=False)
class ActorEntry:
    """One actor id this sidecar hosts: its turn lock, activity and timers."""

    actor_type: str
    actor_id: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    holder: str | None = None  # reentrancy id of the call holding the turn
    depth: int = 0
    waiting: int = 0
    active: bool = False  # the app has activated it (a callback reached the app)
    deactivated: bool = False  # removed from the table; a waiter must look the actor up again
    last_used: float = field(default_factory=time.monotonic)
    timers: dict[str, Scheduled] = field(default_factory=dict)

    @property
    def busy(self) -> bool:
        return self.lock.locked() or self.waiting > 0

    def touch(self) -> None:
        self.last_used = time.monotonic()

    @asynccontextmanager
    async def turn(self, reentrancy_id: str | None = None, max_depth: int = 32) -> AsyncIterator[None]:
        """Hold this actor's turn; re-enter when `reentrancy_id` is the holder's."""
        if reentrancy_id is not None and self.depth > 0 and self.holder == reentrancy_id:
            if self.depth >= max_depth:
                raise max_stack_depth_exceeded()
            self.depth += 1
            try:
                yield
            finally:
                self.depth -= 1
            return
        self.waiting += 1
        try:
            await self.lock.acquire()
        finally:
            self.waiting -= 1
        self.holder = reentrancy_id
        self.depth = 1
        self.touch()
        try:
            yield
        finally:
            self.depth = 0
            self.holder = None
            self.touch()
            self.lock.release()
