"""Activation and turns: the actors active in this sidecar's app, each called one turn at a time.

Every callback (method, timer, reminder, deactivation) reaches the app within the actor's turn
(turns.py). An actor deactivated here (idle, or its id moved to another instance) gets
`DELETE /actors/{type}/{id}` and is forgotten with its timers, as in daprd.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any

import aiohttp
from multidict import CIMultiDict

from localdapr.actors.config import ActorConfig
from localdapr.actors.errors import ActorReply, invoke_error
from localdapr.actors.turns import ActorEntry
from localdapr.context import SidecarContext
from localdapr.errors import DaprError

log = logging.getLogger("localdapr")

REENTRANCY_HEADER = "Dapr-Reentrancy-Id"
# Set on a call one sidecar forwards to the owner: the owner runs it, never forwards it again (no
# ping-pong while two sidecars briefly disagree about the ring).
FORWARDED_HEADER = "X-Localdapr-Actor-Forwarded"
HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "dapr-api-token"}
# Idle actors deactivated at once by one scan (each a DELETE to the app).
DEACTIVATIONS_IN_FLIGHT = 16


class Activations:
    def __init__(self, ctx: SidecarContext) -> None:
        self.ctx = ctx
        # Both are the app's answer to /dapr/config, set once the app is ready.
        self.config = ActorConfig()
        self.hosted: set[str] = set()
        self._actors: dict[tuple[str, str], ActorEntry] = {}

    def entry(self, actor_type: str, actor_id: str) -> ActorEntry:
        key = (actor_type, actor_id)
        entry = self._actors.get(key)
        if entry is None:
            entry = self._actors[key] = ActorEntry(actor_type, actor_id)
        return entry

    def find(self, actor_type: str, actor_id: str) -> ActorEntry | None:
        return self._actors.get((actor_type, actor_id))

    def active_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(sorted(self.hosted), 0)
        for entry in self._actors.values():
            if entry.active and not entry.deactivated:
                counts[entry.actor_type] = counts.get(entry.actor_type, 0) + 1
        return counts

    def timer_tasks(self) -> list[asyncio.Task[Any]]:
        return [t.task for entry in self._actors.values() for t in entry.timers.values()]

    def clear(self) -> None:
        self._actors.clear()

    # ------------------------------------------------------------------ calls
    async def call_method(
        self, actor_type: str, actor_id: str, method: str, body: bytes, headers: CIMultiDict[str]
    ) -> ActorReply:
        """Run one method call on this sidecar's app within the actor's turn."""
        if actor_type not in self.hosted:
            raise invoke_error(
                f"failed to lookup actor: api error: code = FailedPrecondition desc = did not find address "
                f"for actor '{actor_type}/{actor_id}'"
            )
        cfg = self.config.for_type(actor_type)
        out = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in HOP_HEADERS)
        out.popall(FORWARDED_HEADER, None)
        out.setdefault("Content-Type", "application/json; charset=utf-8")
        reentrancy_id: str | None = None
        if cfg.reentrancy:
            # daprd starts a reentrancy chain for a call that has none, and the SDK carries it on.
            reentrancy_id = headers.get(REENTRANCY_HEADER) or str(uuid.uuid4())
            out[REENTRANCY_HEADER] = reentrancy_id
        else:
            out.popall(REENTRANCY_HEADER, None)
        policy = self.ctx.resiliency.for_actor(actor_type)
        delays = policy.retry.delays() if policy.retry else iter(())
        while True:
            # daprd's actor policy wraps the call to the app: a method that failed (500) or an app
            # that did not answer in time is called again, each attempt a turn of its own.
            if policy.breaker is not None and not policy.breaker.allow():
                raise invoke_error("circuit breaker is open")
            try:
                resp = await self.call_app(
                    actor_type,
                    actor_id,
                    f"method/{method}",
                    body,
                    out,
                    reentrancy_id,
                    cfg.max_stack_depth,
                    policy.timeout,
                )
            except DaprError as exc:
                if not isinstance(exc.__cause__, (aiohttp.ClientError, TimeoutError, OSError)):
                    raise  # refused before reaching the app (e.g. reentrancy depth): not retried
                if policy.breaker is not None:
                    policy.breaker.record(False)
                delay = next(delays, None)
                if delay is None:
                    raise
                await asyncio.sleep(delay)
                continue
            if policy.breaker is not None:
                policy.breaker.record(resp.status < 500)
            delay = next(delays, None) if resp.status >= 500 else None
            if delay is None:
                break
            await asyncio.sleep(delay)
        if resp.status == 200:
            return ActorReply(200, resp.body, resp.headers.get("Content-Type", "application/json"))
        if resp.status == 404:
            return ActorReply.error(invoke_error(f"actor method not found: {method}"))
        text = resp.body.decode(errors="replace")
        return ActorReply.error(invoke_error(f"error from actor service: ({resp.status}) {text}"))

    async def call_app(
        self,
        actor_type: str,
        actor_id: str,
        tail: str,
        body: bytes,
        headers: CIMultiDict[str] | dict[str, str],
        reentrancy_id: str | None = None,
        max_depth: int = 32,
        timeout: float | None = None,
    ) -> Any:
        """`PUT /actors/{type}/{id}/{tail}` on the app, within the actor's turn (activating it)."""
        channel = self.ctx.channel
        if channel is None:
            raise invoke_error("app channel is not initialized")
        while True:
            entry = self.entry(actor_type, actor_id)
            async with entry.turn(reentrancy_id, max_depth):
                if entry.deactivated:
                    continue  # deactivated while we waited: take the turn of the fresh entry
                try:
                    resp = await channel.request(
                        "PUT",
                        f"/actors/{actor_type}/{actor_id}/{tail}",
                        body=body,
                        headers=headers,
                        timeout=timeout or 60.0,
                    )
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    raise invoke_error(f"error from actor service: {exc or type(exc).__name__}") from exc
                if not entry.active:
                    self.ctx.runtime.telemetry.actor_activated(actor_type)
                entry.active = True  # the SDK activates the actor before it runs the callback
                return resp

    # ------------------------------------------------------------------ deactivation
    async def deactivate(self, entry: ActorEntry) -> None:
        async with entry.turn():
            if entry.deactivated:
                return
            entry.deactivated = True
            if entry.active:
                self.ctx.runtime.telemetry.actor_deactivated(entry.actor_type)
            if self._actors.get((entry.actor_type, entry.actor_id)) is entry:
                del self._actors[(entry.actor_type, entry.actor_id)]
            for running in entry.timers.values():
                running.stop()  # timers die with the activation, as in daprd
            entry.timers.clear()
            if entry.active and self.ctx.channel is not None:
                try:
                    resp = await self.ctx.channel.request(
                        "DELETE", f"/actors/{entry.actor_type}/{entry.actor_id}", timeout=10
                    )
                    # The SDK answers 500 "not activated" for an actor it never activated (a
                    # call that failed before activation): nothing to deactivate, not a problem.
                    if resp.status != 200 and b"is not activated" not in resp.body:
                        log.warning(
                            "[%s] deactivating %s/%s: app answered %d %s",
                            self.ctx.app_id,
                            entry.actor_type,
                            entry.actor_id,
                            resp.status,
                            resp.body[:200],
                        )
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    log.warning(
                        "[%s] deactivating %s/%s failed: %s",
                        self.ctx.app_id,
                        entry.actor_type,
                        entry.actor_id,
                        exc,
                    )

    async def deactivate_idle(self, now: float) -> int:
        """Deactivate the actors idle for their type's timeout; how many were deactivated."""
        idle: list[ActorEntry] = []
        for entry in list(self._actors.values()):
            if entry.busy:
                continue
            timeout = self.config.for_type(entry.actor_type).idle_timeout
            if not entry.active:
                self._actors.pop((entry.actor_type, entry.actor_id), None)
            elif now - entry.last_used >= timeout:
                idle.append(entry)
        # A fleet that went quiet together goes idle together (10,000 actors in one scan). One at a
        # time, a scan took a minute of DELETEs while the upkeep loop (ring changes) waited; all at
        # once, they would flood the app. A few in flight keeps the app's other calls going.
        gate = asyncio.Semaphore(DEACTIVATIONS_IN_FLIGHT)

        async def one(entry: ActorEntry) -> None:
            async with gate:
                await self.deactivate(entry)

        await asyncio.gather(*(one(e) for e in idle))
        return len(idle)

    async def deactivate_moved(self, actor_type: str, owned: Callable[[str, str], bool]) -> None:
        """Deactivate the actors of `actor_type` whose id this instance no longer owns."""
        moved = [
            e
            for e in self._actors.values()
            if e.actor_type == actor_type and not owned(actor_type, e.actor_id)
        ]
        for entry in moved:
            await self.deactivate(entry)
