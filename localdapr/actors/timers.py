"""Actor timers: in memory only, fired within the actor's turn, gone with the actor's activation."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from localdapr.actors.activation import Activations
from localdapr.actors.errors import actor_error, callback_failed
from localdapr.actors.reminders import Registration, Scheduled
from localdapr.actors.schedule import ScheduleError
from localdapr.actors.turns import ActorEntry
from localdapr.errors import DaprError, malformed


class Timers:
    def __init__(self, activations: Activations) -> None:
        self.activations = activations

    async def register(self, actor_type: str, actor_id: str, name: str, body: Any) -> None:
        if not isinstance(body, dict):
            raise malformed("timer request must be a JSON object")
        try:
            reg = Registration.from_request(actor_type, actor_id, name, body)
        except ScheduleError as exc:
            raise actor_error("ERR_ACTOR_TIMER_CREATE", f"error creating actor timer: {exc}") from exc
        if not reg.callback:
            raise actor_error("ERR_ACTOR_TIMER_CREATE", "error creating actor timer: callback is required")
        entry = self.activations.entry(actor_type, actor_id)
        old = entry.timers.pop(name, None)
        if old is not None:
            old.stop()
        entry.touch()
        entry.timers[name] = Scheduled(asyncio.create_task(self._run(entry, reg)), reg)

    async def unregister(self, actor_type: str, actor_id: str, name: str) -> None:
        entry = self.activations.find(actor_type, actor_id)
        if entry is not None:
            running = entry.timers.pop(name, None)
            if running is not None:
                running.stop()

    async def _run(self, entry: ActorEntry, reg: Registration) -> None:
        assert reg.schedule is not None
        body = json.dumps(reg.timer_body()).encode()
        headers = {"Content-Type": "application/json"}
        app_id = self.activations.ctx.app_id
        try:
            while (when := reg.schedule.next_fire()) is not None and not reg.cancelled:
                await asyncio.sleep(max(0.0, when - time.time()))
                reg.schedule.fired += 1
                if entry.deactivated or reg.cancelled:
                    return
                reg.firing = True
                try:
                    resp = await self.activations.call_app(
                        entry.actor_type, entry.actor_id, f"method/timer/{reg.name}", body, headers
                    )
                    if resp.status != 200:
                        callback_failed(
                            app_id, "timer", reg, f"app answered {resp.status} {resp.body[:200]!r}"
                        )
                except DaprError as exc:
                    callback_failed(app_id, "timer", reg, exc.message)
                finally:
                    reg.firing = False
        finally:
            running = entry.timers.get(reg.name)
            if running is not None and running.task is asyncio.current_task():
                del entry.timers[reg.name]
