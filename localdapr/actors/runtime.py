"""The actor runtime of one sidecar: builds its parts and keeps them up to date.

The parts depend only downward: reminders and state on routing, routing and timers on activation
(with turns), activation on the app channel. This class reads the app's actor configuration,
announces the hosted types to placement, and runs the upkeep: following ring changes (rebalancing,
reminders) and deactivating idle actors.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from localdapr.actors.activation import Activations
from localdapr.actors.config import ActorConfig
from localdapr.actors.placement import Placement
from localdapr.actors.reminding import Reminders
from localdapr.actors.routing import Router
from localdapr.actors.state import ActorState
from localdapr.actors.timers import Timers
from localdapr.context import SidecarContext
from localdapr.errors import ComponentError

log = logging.getLogger("localdapr")

RECONCILE_INTERVAL = 0.25


class ActorSubsystem:
    def __init__(self, ctx: SidecarContext) -> None:
        self.ctx = ctx
        self.placement = Placement(ctx.registry)
        self.activations = Activations(ctx)
        self.router = Router(ctx, self.placement, self.activations)
        self.state = ActorState(ctx, self.router)
        self.timers = Timers(self.activations)
        self.reminders = Reminders(self.activations, self.router)
        self._members: dict[str, tuple[str, ...]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._last_scan = time.monotonic()

    # ------------------------------------------------------------------ lifecycle
    async def on_app_ready(self) -> None:
        """Read the app's /dapr/config and register its actor types with placement."""
        channel = self.ctx.channel
        assert channel is not None
        app_id = self.ctx.app_id
        resp = await channel.request("GET", "/dapr/config", headers={"Dapr-App-Id": app_id}, timeout=10)
        if resp.status == 404:
            return  # daprd: no /dapr/config = the app hosts no actors
        if resp.status != 200:
            log.warning("[%s] GET /dapr/config answered %d; no actors hosted", app_id, resp.status)
            return
        try:
            config = ActorConfig.from_json(resp.json())
        except ValueError as exc:
            raise ComponentError(f"app {app_id}: bad actor configuration: {exc}") from exc
        if not config.entities:
            self.activations.config = config
            return
        stores = [s for s in self.ctx.runtime.states.values() if s.is_actor_store]
        if len(stores) != 1:
            raise ComponentError(
                f"app {app_id} hosts actors ({', '.join(config.entities)}) but "
                f'{len(stores)} state stores have metadata actorStateStore: "true"; exactly one must '
                "(add it to the state store component the actors should use)"
            )
        self.activations.config = config
        self.activations.hosted = set(config.entities)
        self.ctx.instance.actor_types = sorted(self.activations.hosted)
        self.ctx.registry.announce(self.ctx.instance)
        log.info(
            "[%s] hosting actor types %s (idle timeout %.1fs, scan %.1fs)",
            app_id,
            ", ".join(sorted(self.activations.hosted)),
            config.default.idle_timeout,
            config.scan_interval,
        )
        self._loop_task = asyncio.create_task(self._maintain())

    async def stop(self) -> None:
        tasks: list[asyncio.Task[Any]] = []
        if self._loop_task is not None:
            tasks.append(self._loop_task)
        tasks += self.reminders.tasks() + self.activations.timer_tasks()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.reminders.clear()
        self.activations.clear()
        await self.router.close()

    def active_counts(self) -> dict[str, int]:
        return self.activations.active_counts()

    # ------------------------------------------------------------------ upkeep
    async def _maintain(self) -> None:
        """Background upkeep: follow ring changes (reminders, rebalancing) and deactivate idle actors."""
        while True:
            try:
                await self._reconcile()
                now = time.monotonic()
                if now - self._last_scan >= self.activations.config.scan_interval:
                    self._last_scan = now
                    await self.activations.deactivate_idle(now)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("[%s] actor upkeep failed", self.ctx.app_id)
            await asyncio.sleep(min(RECONCILE_INTERVAL, self.activations.config.scan_interval))

    async def _reconcile(self) -> None:
        for actor_type in sorted(self.activations.hosted):
            members = self.placement.members(actor_type)
            if self._members.get(actor_type) == members:
                continue
            self._members[actor_type] = members
            if self.ctx.instance.instance_id not in members:
                continue  # not announced yet (or withdrawn): nothing is ours
            log.info("[%s] placement for %s: %d host(s)", self.ctx.app_id, actor_type, len(members))
            # Rebalancing: actors whose id moved to another instance are deactivated here, so the new
            # owner's activation reads the state back and there is never a stale second copy.
            await self.activations.deactivate_moved(actor_type, self.router.owns)
            await self.reminders.load(actor_type)
