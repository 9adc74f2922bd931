"""The notification sender: drains the outbox through the notification channel, in the background.

Alert intake never waits for it: an alert write only adds its notifications to the outbox (in the
same transaction) and wakes the sender. The sender sends each alert's notifications in order, retries
a failed one with a doubling backoff (localdapr applies no resiliency policy to output bindings, so
the retries are here, and the same on daprd), and gives one up only after `give_up_after` (counted
and listed in the status, never silently). It also wakes up every `poll` seconds, for notifications
another replica wrote or a previous run of this one left behind.

At least once, exactly once in effect: a notification is deleted only after the channel took it, so
a sender killed between the send and the delete sends it again after its claim runs out, with the
same Idempotency-Key.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apps.alerting.notifications import (
    DeliveryStatus,
    Notification,
    NotificationsPublic,
    backoff,
    next_due,
    next_to_send,
    summarize,
)
from apps.alerting.outbox import OutboxRepository
from apps.alerting.ports import DeliveryFailed, NotificationChannel
from apps.alerting.store import Conflict, Versioned
from apps.common.metrics import record_notification_failure

log = logging.getLogger("alerting.notify")


@dataclass(frozen=True, slots=True)
class SenderSettings:
    timeout: float = 10.0  # one attempt at most (the binding's own responseTimeout should be shorter)
    initial_backoff: float = 1.0
    max_backoff: float = 60.0
    give_up_after: float = 24 * 3600.0
    poll: float = 5.0
    concurrency: int = 4  # alerts sent at once (each alert's notifications go one by one)
    finish_retries: int = 20  # etag conflicts tolerated when taking one off its pending list


def utcnow() -> datetime:
    return datetime.now(UTC)


class NotificationSender:
    def __init__(
        self,
        outbox: OutboxRepository,
        channel: NotificationChannel,
        settings: SenderSettings,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.outbox = outbox
        self.channel = channel
        self.settings = settings
        self.clock = clock
        self._wake = asyncio.Event()
        self._status: DeliveryStatus | None = None
        self._status_lock = asyncio.Lock()

    def wake(self) -> None:
        """New notifications are in the outbox: look now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Drain until cancelled; a failing store only delays delivery (logged, tried again)."""
        while True:
            self._wake.clear()
            try:
                due = await self.drain()
            except Exception:
                log.exception("draining the notification outbox failed; trying again")
                due = None
            wait = self.settings.poll
            if due is not None:
                wait = min(wait, max((due - self.clock()).total_seconds(), 0.0))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=wait)
            except TimeoutError:
                pass

    async def drain(self) -> datetime | None:
        """Send what is due now; when the next pending one is due (None: nothing pending)."""
        pending = await self.outbox.pending()
        reads = {v.value.id: v for v in pending}
        sending = [reads[n.id] for n in next_to_send(_values(pending), self.clock())]
        if sending:
            gate = asyncio.Semaphore(self.settings.concurrency)

            async def one(read: Versioned[Notification]) -> None:
                async with gate:
                    await self._deliver(read)

            await asyncio.gather(*(one(v) for v in sending))
            # A delivered one lets the next of its alert through; a failed one is due later.
            pending = await self.outbox.pending()
        return next_due(_values(pending))

    async def status(self, binding: str) -> NotificationsPublic:
        """How delivery is going (`GET /v1/notifications`): pending, failing, delivered, given up."""
        # Pending first: a notification finished between the two reads is then counted, never missing
        # from both (finishing takes it out and counts it in one transaction).
        pending = await self.outbox.pending()
        status = await self.outbox.status()
        return summarize(binding, status, [v.value for v in pending])

    async def _deliver(self, read: Versioned[Notification]) -> None:
        n, now = read.value, self.clock()
        if now - n.created_at > timedelta(seconds=self.settings.give_up_after):
            await self._finish(n, lambda s: s.gave_up(n))
            log.error(
                "gave up notification %s (%s %s) after %d attempts: %s",
                n.id,
                n.alert_id,
                n.action,
                n.attempts,
                n.last_error,
            )
            return
        lease = timedelta(seconds=self.settings.timeout + 5)
        claimed = n.model_copy(
            update={"attempts": n.attempts + 1, "last_attempt_at": now, "claimed_until": now + lease}
        )
        try:
            await self.outbox.claim(read, claimed)
        except Conflict:
            return  # another replica took it
        try:
            await asyncio.wait_for(self.channel.send(claimed), timeout=self.settings.timeout)
        except (DeliveryFailed, TimeoutError) as exc:
            error = str(exc) or f"no answer within {self.settings.timeout:g} s"
            record_notification_failure("timeout" if isinstance(exc, TimeoutError) else "delivery_failed")
            wait = backoff(claimed.attempts, self.settings.initial_backoff, self.settings.max_backoff)
            failed = claimed.model_copy(
                update={"claimed_until": None, "last_error": error, "next_attempt_at": self.clock() + wait}
            )
            await self.outbox.save(failed)
            # Attempts 1, 2, 4, 8, ...: a webhook down for an hour is a few lines, not hundreds (the
            # dashboard and GET /v1/notifications show the live state).
            level = logging.WARNING if claimed.attempts & (claimed.attempts - 1) == 0 else logging.DEBUG
            log.log(
                level,
                "notification %s (%s %s) attempt %d failed, next in %.0f s: %s",
                n.id,
                n.alert_id,
                n.action,
                claimed.attempts,
                wait.total_seconds(),
                error,
            )
            await self._update(lambda s: s.failed(self.clock(), error))
            return
        await self._finish(claimed, lambda s: s.succeeded(self.clock()))
        log.info("notification %s (%s %s) delivered", n.id, n.alert_id, n.action)

    async def _finish(self, n: Notification, change: Callable[[DeliveryStatus], DeliveryStatus]) -> None:
        """Take `n` out of the outbox and count it by `change`, in one transaction."""
        async with self._status_lock:
            status = change(await self._current_status())
            for _ in range(self.settings.finish_retries):
                try:
                    await self.outbox.finish(n, status)
                except Conflict:
                    continue  # an alert write added to the same pending list: read it again
                self._status = status
                return
        raise RuntimeError(
            f"notification {n.id}: gave up after {self.settings.finish_retries} etag conflicts"
        )

    async def _update(self, change: Callable[[DeliveryStatus], DeliveryStatus]) -> None:
        async with self._status_lock:
            self._status = change(await self._current_status())
            await self.outbox.save_status(self._status)

    async def _current_status(self) -> DeliveryStatus:
        if self._status is None:
            self._status = await self.outbox.status()
        return self._status


def _values(reads: list[Versioned[Notification]]) -> list[Notification]:
    return [v.value for v in reads]
