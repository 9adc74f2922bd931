"""The notification sender over the in-memory outbox: retries with backoff, exactly one delivery per
change (in order per alert), a sender dying after a send, replicas, giving up, and intake that never
waits for the webhook."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest

from apps.alerting.notifications import DeliveryStatus, Notification
from apps.alerting.ports import DeliveryFailed
from apps.alerting.sender import NotificationSender, SenderSettings
from apps.alerting.service import AlertingService
from tests.unit.alerting.fakes import FakeMachines, FlakyChannel, InMemoryAlertingRepository
from tests.unit.alerting.helpers import alert, at

SETTINGS = SenderSettings(timeout=1, initial_backoff=1, max_backoff=4, give_up_after=3600, poll=5)


class Clock:
    def __init__(self) -> None:
        self.now = at(1000)

    def __call__(self) -> datetime:
        return self.now

    def advance_to(self, when: datetime | None) -> None:
        if when is not None and when > self.now:
            self.now = when


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def repo() -> InMemoryAlertingRepository:
    return InMemoryAlertingRepository()


@pytest.fixture
def service(repo: InMemoryAlertingRepository, clock: Clock) -> AlertingService:
    return AlertingService(repo, FakeMachines(), clock=clock)


async def episode(service: AlertingService, equipment_id: str = "engine-001") -> None:
    await service.apply_alert(alert("open", equipment_id=equipment_id, revision=1))
    await service.apply_alert(
        alert("escalate", equipment_id=equipment_id, severity="critical", updated=5, revision=2)
    )
    await service.apply_alert(
        alert("clear", equipment_id=equipment_id, severity="critical", updated=9, revision=3)
    )


async def drain_all(sender: NotificationSender, clock: Clock, repo: InMemoryAlertingRepository) -> int:
    rounds = 0
    while repo.notifications():
        clock.advance_to(await sender.drain())
        rounds += 1
        assert rounds < 100, "the outbox does not drain"
    return rounds


async def test_a_webhook_failing_at_first_gets_each_change_exactly_once_in_order(
    service: AlertingService, repo: InMemoryAlertingRepository, clock: Clock
) -> None:
    await episode(service)
    await episode(service, "engine-002")
    channel = FlakyChannel(failures=2)
    sender = NotificationSender(repo, channel, SETTINGS, clock)
    await sender.drain()  # first attempts fail: the status says so
    status = await sender.status("notifications")
    assert status.failing and status.pending == 6 and status.last_error == "received status code 503"
    assert {p.attempts for p in status.pending_notifications} == {0, 1}, "an alert's later changes wait"
    await drain_all(sender, clock, repo)
    for eid in ("engine-001", "engine-002"):
        got = [n.action for n in channel.delivered if n.equipment_id == eid]
        assert got == ["open", "escalate", "clear"]
    assert len({n.id for n in channel.delivered}) == len(channel.delivered) == 6
    assert set(channel.attempts.values()) == {3}
    final = await sender.status("notifications")
    assert (final.failing, final.pending, final.delivered, final.consecutive_failures) == (False, 0, 6, 0)


async def test_retries_back_off_doubling_up_to_the_cap(
    service: AlertingService, repo: InMemoryAlertingRepository, clock: Clock
) -> None:
    await service.apply_alert(alert("open", revision=1))
    sender = NotificationSender(repo, FlakyChannel(failures=5), SETTINGS, clock)
    waits = []
    for _ in range(5):
        start = clock.now
        due = await sender.drain()
        assert due is not None
        waits.append((due - start).total_seconds())
        clock.advance_to(due)
    assert waits == [1, 2, 4, 4, 4]
    await sender.drain()
    assert repo.notifications() == []


async def test_a_sender_killed_after_the_send_sends_again_with_the_same_key(
    service: AlertingService, repo: InMemoryAlertingRepository, clock: Clock
) -> None:
    """The webhook took it, then the sender died before recording that: after its claim runs out, the
    next sender sends the same Idempotency-Key again (the receiver keeps the first)."""
    await service.apply_alert(alert("open", revision=1))
    channel = FlakyChannel()
    sender = NotificationSender(repo, channel, SETTINGS, clock)

    async def crash(n: Notification, status: DeliveryStatus) -> None:
        raise ConnectionError("process killed")

    repo.finish = crash  # type: ignore[method-assign]
    with pytest.raises(ConnectionError):
        await sender.drain()
    del repo.finish
    (pending,) = repo.notifications()
    assert pending.claimed_until is not None
    restarted = NotificationSender(repo, channel, SETTINGS, clock)
    assert await restarted.drain() == pending.claimed_until, "claimed: left alone until the claim ends"
    clock.advance_to(pending.claimed_until)
    await drain_all(restarted, clock, repo)
    assert [n.id for n in channel.delivered] == [pending.id, pending.id]


async def test_replicas_draining_together_send_each_notification_once(
    service: AlertingService, repo: InMemoryAlertingRepository, clock: Clock
) -> None:
    for i in range(20):
        await service.apply_alert(alert("open", equipment_id=f"m-{i}", revision=1))
    channel = FlakyChannel()
    senders = [NotificationSender(repo, channel, SETTINGS, clock) for _ in range(3)]
    await asyncio.gather(*(s.drain() for s in senders))
    assert sorted(channel.attempts.values()) == [1] * 20 and repo.notifications() == []


async def test_a_notification_is_given_up_after_its_time_and_listed(
    service: AlertingService, repo: InMemoryAlertingRepository, clock: Clock
) -> None:
    await service.apply_alert(alert("open", revision=1))
    sender = NotificationSender(repo, FlakyChannel(failures=10**6), SETTINGS, clock)
    clock.advance_to(await sender.drain())
    clock.now += timedelta(seconds=SETTINGS.give_up_after + 1)
    await sender.drain()
    status = await sender.status("notifications")
    assert (status.pending, status.abandoned, status.failing) == (0, 1, False)
    (gone,) = status.recent_abandoned
    assert gone.alert_id == "engine-001:rul_low:1" and gone.attempts == 1 and "503" in (gone.last_error or "")


async def test_a_finished_notification_is_counted_in_the_same_write(
    service: AlertingService, repo: InMemoryAlertingRepository, clock: Clock
) -> None:
    """Taking a notification out of the outbox and counting it (delivered, or given up) are one
    transaction: no separate status write exists in which a crash could lose the count."""
    await service.apply_alert(alert("open", revision=1))
    await service.apply_alert(alert("open", equipment_id="engine-002", revision=1))

    async def crash(status: DeliveryStatus) -> None:
        raise ConnectionError("process killed between the two writes")

    class RefusesEngine2(FlakyChannel):
        async def send(self, notification: Notification) -> None:
            if notification.equipment_id == "engine-002":
                raise DeliveryFailed("received status code 503")
            await super().send(notification)

    sender = NotificationSender(repo, RefusesEngine2(), SETTINGS, clock)
    clock.advance_to(await sender.drain())  # engine-001's is delivered, engine-002's fails once
    repo.save_status = crash  # type: ignore[method-assign]
    clock.now += timedelta(seconds=SETTINGS.give_up_after + 1)
    await sender.drain()  # engine-002's is given up
    status = await NotificationSender(repo, FlakyChannel(), SETTINGS, clock).status("notifications")
    assert (status.pending, status.delivered, status.abandoned) == (0, 1, 1)


async def test_an_alert_write_during_a_finish_is_kept(
    service: AlertingService, repo: InMemoryAlertingRepository, clock: Clock
) -> None:
    """Finishing takes the notification off its shard's pending list under that list's etag; an alert
    write adding to the list at the same moment makes it read again, and neither change is lost."""
    await service.apply_alert(alert("open", revision=1))

    class Interleaving(FlakyChannel):
        async def send(self, notification: Notification) -> None:
            await super().send(notification)
            await service.apply_alert(alert("escalate", severity="critical", updated=5, revision=2))

    channel = Interleaving()
    await drain_all(NotificationSender(repo, channel, SETTINGS, clock), clock, repo)
    assert [n.action for n in channel.delivered] == ["open", "escalate"]


async def test_intake_never_waits_for_the_webhook(repo: InMemoryAlertingRepository) -> None:
    class Hanging(FlakyChannel):
        async def send(self, notification: Notification) -> None:
            await asyncio.Event().wait()

    settings = SenderSettings(timeout=0.05, initial_backoff=0.05, max_backoff=0.05, poll=0.05)
    sender = NotificationSender(repo, Hanging(), settings)
    service = AlertingService(repo, FakeMachines(), on_notify=sender.wake)
    running = asyncio.create_task(sender.run())
    try:
        for i in range(10):
            await asyncio.wait_for(service.apply_alert(alert("open", equipment_id=f"m-{i}", revision=1)), 1)
        status = await sender.status("notifications")

        async def failing() -> bool:
            return (await sender.status("notifications")).failing

        deadline = asyncio.get_running_loop().time() + 5
        while not await failing():
            assert asyncio.get_running_loop().time() < deadline, "no attempt timed out"
            await asyncio.sleep(0.01)
        status = await sender.status("notifications")
        assert status.pending == 10 and "no answer within" in (status.last_error or "")
    finally:
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
