"""An app hosting `CounterActor` with the official SDK (`DaprActor`), for the localdapr actor tests.

It records what only the host can see, served on plain HTTP at `GET /stats`: calls in flight per
actor id (to catch overlapping turns), the most calls in flight at once across ids, activations,
deactivations, reminder and timer fires. Environment:
ACTOR_IDLE_TIMEOUT / ACTOR_SCAN_INTERVAL  seconds (floats), given to the sidecar via /dapr/config;
REENTRANCY=1                              enables actor reentrancy;
CALLER_ONLY=1                             hosts no actor (an app that only calls actors).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from dapr.actor import Actor, ActorId, ActorInterface, ActorProxy, Remindable, actormethod
from dapr.actor.runtime.config import ActorReentrancyConfig, ActorRuntimeConfig
from dapr.actor.runtime.runtime import ActorRuntime
from dapr.ext.fastapi import DaprActor
from fastapi import FastAPI

# The type name can be changed per run (a persistent store such as Redis then never mixes runs).
ACTOR_TYPE = os.environ.get("ACTOR_TYPE", "CounterActor")
IDLE = float(os.environ.get("ACTOR_IDLE_TIMEOUT", "3600"))
SCAN = float(os.environ.get("ACTOR_SCAN_INTERVAL", "30"))
REENTRANT = os.environ.get("REENTRANCY") == "1"
CALLER_ONLY = os.environ.get("CALLER_ONLY") == "1"


class Stats:
    def __init__(self) -> None:
        self.in_flight: dict[str, int] = defaultdict(int)
        self.overlaps: dict[str, int] = defaultdict(int)
        self.global_in_flight = 0
        self.max_global_in_flight = 0
        self.activations: dict[str, int] = defaultdict(int)
        self.deactivations: dict[str, int] = defaultdict(int)
        self.reminders: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.timers: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.flaky_calls: dict[str, int] = defaultdict(int)

    def json(self) -> dict[str, Any]:
        return {
            "overlaps": dict(self.overlaps),
            "max_global_in_flight": self.max_global_in_flight,
            "activations": dict(self.activations),
            "deactivations": dict(self.deactivations),
            "reminders": dict(self.reminders),
            "timers": dict(self.timers),
            "flaky_calls": dict(self.flaky_calls),
            "pid": os.getpid(),
        }


stats = Stats()


class CounterActorInterface(ActorInterface):
    @actormethod(name="Add")
    async def add(self, amount: int) -> int: ...

    @actormethod(name="Get")
    async def get(self) -> int: ...

    @actormethod(name="Slow")
    async def slow(self, ms: int) -> int: ...

    @actormethod(name="Boom")
    async def boom(self, message: str) -> None: ...

    @actormethod(name="Flaky")
    async def flaky(self, failures: int) -> int: ...

    @actormethod(name="StartReminder")
    async def start_reminder(self, spec: dict[str, Any]) -> None: ...

    @actormethod(name="StopReminder")
    async def stop_reminder(self, name: str) -> None: ...

    @actormethod(name="StartTimer")
    async def start_timer(self, spec: dict[str, Any]) -> None: ...

    @actormethod(name="StopTimer")
    async def stop_timer(self, name: str) -> None: ...

    @actormethod(name="CallOther")
    async def call_other(self, other: str) -> int: ...

    @actormethod(name="Bounce")
    async def bounce(self, back: str) -> int: ...


class CounterActor(Actor, CounterActorInterface, Remindable):
    async def _on_activate(self) -> None:
        stats.activations[self.id.id] += 1

    async def _on_deactivate(self) -> None:
        stats.deactivations[self.id.id] += 1

    async def _value(self) -> int:
        found, value = await self._state_manager.try_get_state("count")
        return int(value) if found else 0

    async def add(self, amount: int) -> int:
        value = await self._value() + int(amount)
        await self._state_manager.set_state("count", value)
        return value

    async def get(self) -> int:
        return await self._value()

    async def slow(self, ms: int) -> int:
        """Sleep inside the turn; a second call for the same id inside this window is an overlap."""
        me = self.id.id
        stats.in_flight[me] += 1
        stats.global_in_flight += 1
        stats.max_global_in_flight = max(stats.max_global_in_flight, stats.global_in_flight)
        if stats.in_flight[me] > 1:
            stats.overlaps[me] += 1
        try:
            await asyncio.sleep(int(ms) / 1000)
        finally:
            stats.in_flight[me] -= 1
            stats.global_in_flight -= 1
        return await self.add(1)

    async def boom(self, message: str) -> None:
        raise ValueError(message)

    async def flaky(self, failures: int) -> int:
        """Fail the first `failures` calls for this id (a resiliency retry calls again); then answer
        how many calls it took."""
        me = self.id.id
        stats.flaky_calls[me] += 1
        if stats.flaky_calls[me] <= int(failures):
            raise RuntimeError(f"flaky call {stats.flaky_calls[me]} of {me}")
        return stats.flaky_calls[me]

    async def start_reminder(self, spec: dict[str, Any]) -> None:
        await self.register_reminder(
            spec["name"],
            spec.get("state", "").encode(),
            timedelta(seconds=float(spec.get("due", 0))),
            timedelta(seconds=float(spec["period"])) if spec.get("period") else None,
        )

    async def stop_reminder(self, name: str) -> None:
        await self.unregister_reminder(name)

    async def start_timer(self, spec: dict[str, Any]) -> None:
        await self.register_timer(
            spec["name"],
            self.on_tick,
            {"name": spec["name"]},
            timedelta(seconds=float(spec.get("due", 0))),
            timedelta(seconds=float(spec["period"])),
        )

    async def stop_timer(self, name: str) -> None:
        await self.unregister_timer(name)

    async def call_other(self, other: str) -> int:
        """Actor-to-actor call through the sidecar (for reentrancy: A -> B -> A)."""
        proxy = ActorProxy.create(ACTOR_TYPE, ActorId(other), CounterActorInterface)
        return int(await proxy.Bounce(self.id.id))

    async def bounce(self, back: str) -> int:
        proxy = ActorProxy.create(ACTOR_TYPE, ActorId(back), CounterActorInterface)
        return int(await proxy.Get())

    async def on_tick(self, data: Any) -> None:
        stats.timers[self.id.id].append({"at": time.time(), "data": data})

    async def receive_reminder(
        self,
        name: str,
        state: bytes,
        due_time: Any,
        period: Any,
        ttl: Any = None,
    ) -> None:
        stats.reminders[self.id.id].append(
            {"at": time.time(), "name": name, "state": state.decode(errors="replace"), "period": str(period)}
        )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    if not CALLER_ONLY:
        ActorRuntime.set_actor_config(
            ActorRuntimeConfig(
                actor_idle_timeout=timedelta(seconds=IDLE),
                actor_scan_interval=timedelta(seconds=SCAN),
                reentrancy=ActorReentrancyConfig(enabled=True) if REENTRANT else None,
            )
        )
        # The SDK names an actor type after its class, so a renamed type is a subclass; it must list
        # Remindable among its own bases (the SDK checks `__bases__`, not the MRO).
        hosted = (
            CounterActor if ACTOR_TYPE == "CounterActor" else type(ACTOR_TYPE, (CounterActor, Remindable), {})
        )
        await actor.register_actor(hosted)
    yield


app = FastAPI(lifespan=lifespan)
actor = DaprActor(app)


@app.get("/stats")
async def get_stats() -> dict[str, Any]:
    return stats.json()


@app.get("/ping")
async def ping() -> dict[str, str]:
    """A plain endpoint, the baseline of the benchmark."""
    return {"pong": "ok"}


@app.post("/call/{actor_id}/{method}")
async def call_actor(actor_id: str, method: str, body: dict[str, Any]) -> Any:
    """Call an actor from this app with ActorProxy (so a test can call from another app's sidecar)."""
    proxy = ActorProxy.create(ACTOR_TYPE, ActorId(actor_id), CounterActorInterface)
    arg = body.get("arg")
    raw = await proxy.invoke_method(method, None if arg is None else json.dumps(arg).encode())
    return json.loads(raw) if raw else None
