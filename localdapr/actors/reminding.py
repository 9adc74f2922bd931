"""Firing actor reminders: one task per reminder whose actor id this instance owns.

The registrations and their persistence are in reminders.py; this part keeps them running, hands
them over when the ring changes, and fires each within the actor's turn.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from localdapr.actors.activation import Activations
from localdapr.actors.errors import actor_error, callback_failed
from localdapr.actors.reminders import Registration, ReminderStore, Scheduled
from localdapr.actors.routing import Router
from localdapr.actors.schedule import OVERDUE_AFTER, ScheduleError, overdue_delay
from localdapr.actors.state import actor_store
from localdapr.errors import DaprError, malformed
from localdapr.state.base import StateStoreError

log = logging.getLogger("localdapr")

REMINDER_ATTEMPTS = 3


class Reminders:
    def __init__(self, activations: Activations, router: Router) -> None:
        self.ctx = activations.ctx
        self.activations = activations
        self.router = router
        self._tasks: dict[tuple[str, str, str], Scheduled] = {}

    def store(self) -> ReminderStore:
        return ReminderStore(actor_store(self.ctx))

    def tasks(self) -> list[asyncio.Task[Any]]:
        return [r.task for r in self._tasks.values()]

    def clear(self) -> None:
        self._tasks.clear()

    async def register(self, actor_type: str, actor_id: str, name: str, body: Any) -> None:
        if not isinstance(body, dict):
            raise malformed("reminder request must be a JSON object")
        try:
            reg = Registration.from_request(actor_type, actor_id, name, body)
        except ScheduleError as exc:
            raise actor_error("ERR_ACTOR_REMINDER_CREATE", f"error creating actor reminder: {exc}") from exc
        try:
            await self.store().save(reg)
        except StateStoreError as exc:
            raise actor_error("ERR_ACTOR_REMINDER_CREATE", f"error creating actor reminder: {exc}") from exc
        self._start(reg)

    async def unregister(self, actor_type: str, actor_id: str, name: str) -> None:
        running = self._tasks.pop((actor_type, actor_id, name), None)
        if running is not None:
            running.stop()
        try:
            await self.store().delete(actor_type, actor_id, name)
        except StateStoreError as exc:
            raise actor_error("ERR_ACTOR_REMINDER_DELETE", f"error deleting actor reminder: {exc}") from exc

    async def get(self, actor_type: str, actor_id: str, name: str) -> dict[str, Any] | None:
        try:
            reg = await self.store().get(actor_type, actor_id, name)
        except StateStoreError as exc:
            raise actor_error("ERR_ACTOR_REMINDER_GET", f"error getting actor reminder: {exc}") from exc
        return reg.public() if reg is not None else None

    def _start(self, reg: Registration, reloaded: bool = False) -> None:
        key = (reg.actor_type, reg.actor_id, reg.name)
        old = self._tasks.pop(key, None)
        if old is not None:
            old.stop()
        self._tasks[key] = Scheduled(asyncio.create_task(self._run(reg, reloaded)), reg)

    async def load(self, actor_type: str) -> None:
        """Track the persisted reminders of `actor_type` whose ids this instance owns; drop the rest."""
        try:
            regs = await self.store().load_type(actor_type)
        except NotImplementedError:
            log.warning(
                "[%s] the actor state store cannot list keys; reminders are not reloaded", self.ctx.app_id
            )
            return
        except StateStoreError as exc:
            log.warning("[%s] loading reminders of %s failed: %s", self.ctx.app_id, actor_type, exc)
            return
        mine = {
            (r.actor_type, r.actor_id, r.name): r for r in regs if self.router.owns(r.actor_type, r.actor_id)
        }
        for key, running in list(self._tasks.items()):
            if key[0] == actor_type and key not in mine:
                running.stop()
                del self._tasks[key]
        for key, reg in mine.items():
            if key not in self._tasks:
                self._start(reg, reloaded=True)

    async def _run(self, reg: Registration, reloaded: bool = False) -> None:
        assert reg.schedule is not None
        key = (reg.actor_type, reg.actor_id, reg.name)
        store = self.store()
        body = json.dumps(reg.reminder_body()).encode()
        headers = {"Content-Type": "application/json"}
        try:
            now = time.time()
            reg.schedule.skip_missed(now)
            when = reg.schedule.next_fire()
            # Reloaded overdue (after a restart): an unbounded periodic reminder's catch-up fire is
            # spread over its period, so a fleet's reminders do not all fire in the same instant.
            spread = (
                reloaded
                and when is not None
                and when < now - OVERDUE_AFTER
                and reg.schedule.period is not None
                and reg.schedule.repetitions is None
            )
            if spread:
                assert reg.schedule.period is not None
                when = now + overdue_delay(reg.key, reg.schedule.period)
            while when is not None and not reg.cancelled:
                await asyncio.sleep(max(0.0, when - time.time()))
                reg.firing = True
                try:
                    cancel = await self._fire(reg, body, headers)
                finally:
                    reg.firing = False
                reg.schedule.fired += 1
                if spread:
                    # The late catch-up fire stands for the periods that passed while it waited.
                    spread = False
                    reg.schedule.skip_missed(time.time())
                    late = reg.schedule.next_fire()
                    if late is not None and late <= time.time():
                        reg.schedule.fired += 1
                if cancel or reg.cancelled:
                    break
                if reg.schedule.repetitions is not None and reg.schedule.next_fire() is not None:
                    # The fire count survives a restart where it bounds the schedule ("R5/PT10S").
                    # Unbounded reminders are not rewritten per fire: their times follow from the
                    # first fire and the period (skip_missed), and 10,000 actors with a 30 s reminder
                    # would otherwise cost the store 333 writes/s for nothing.
                    await store.save(reg)
                when = reg.schedule.next_fire()
            running = self._tasks.get(key)
            if running is not None and running.task is asyncio.current_task():
                # Over (one-shot, repetitions, ttl, or cancelled by the app): forget it for good.
                del self._tasks[key]
                await store.delete(reg.actor_type, reg.actor_id, reg.name)
        except StateStoreError as exc:
            callback_failed(self.ctx.app_id, "reminder", reg, f"state store error: {exc}")

    async def _fire(self, reg: Registration, body: bytes, headers: dict[str, str]) -> bool:
        """Deliver one fire (retrying a few times); True when the app asked to cancel the reminder."""
        for attempt in range(REMINDER_ATTEMPTS):
            try:
                resp = await self.activations.call_app(
                    reg.actor_type, reg.actor_id, f"method/remind/{reg.name}", body, headers
                )
            except DaprError as exc:
                problem = exc.message
            else:
                if resp.headers.get("X-Daprremindercancel", "").lower() == "true":
                    return True
                if resp.status == 200:
                    return False
                problem = f"app answered {resp.status} {resp.body[:200]!r}"
            callback_failed(self.ctx.app_id, "reminder", reg, f"attempt {attempt + 1}: {problem}")
            if reg.cancelled:
                return False
            await asyncio.sleep(0.2 * (attempt + 1))
        return False
