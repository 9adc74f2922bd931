"""`pubsub.redis`: pub/sub on Redis Streams, compatible with daprd's components-contrib broker.

Wire format and group handling follow contrib's `pubsub/redis` so a localdapr sidecar and a real
daprd can share one Redis:

* publish = `XADD <topic> [MAXLEN ~ maxLenApprox] * data <bytes> [metadata <json object>]`;
* subscribe = `XGROUP CREATE <topic> <group> 0 MKSTREAM` (BUSYGROUP ignored). Starting the group at
  "0" means a group created after some publishes still receives them;
* new messages are read with `XREADGROUP GROUP <group> <consumer> COUNT queueDepth BLOCK .. >`
  and `XACK`ed only after the handler returns normally;
* a message whose handler raised (or timed out after `processingTimeout`) stays in the group's
  pending entries list. Every `redeliverInterval` a reclaimer looks for entries idle longer than
  `processingTimeout` (`XPENDING ... IDLE`), claims them (`XCLAIM`) and hands them to the handler
  again with `delivery_count` = times delivered. Entries owned by a consumer that crashed are
  reclaimed the same way, by any consumer of the group. `processingTimeout: 0` (or
  `redeliverInterval: 0`) disables redelivery, as in daprd.

Differences from daprd, chosen for a local tool:

* each subscription uses its own consumer name (`<group>-<uuid>`) where daprd uses the group name
  for every replica; unique names let the reclaimer tell a dead replica's messages apart. On
  unsubscribe/close a consumer with nothing pending is deleted so groups do not fill with names;
* `concurrency` workers and a `queueDepth` buffer exist per subscription, not per component;
* the reclaimer skips entries this subscription still holds (buffered or in its handler), so a
  slow handler in this process is not handed its own message twice;
* `enableTLS` verifies the server certificate (contrib skips verification);
* a bare integer duration is read as seconds (see `localdapr.durations`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from localdapr.components.spec import ComponentSpec
from localdapr.durations import parse_go_duration
from localdapr.pubsub.base import BrokerMessage, MessageHandler, PubSubBroker, bulk_in_flight
from localdapr.redisconn import RedisConnections

log = logging.getLogger("localdapr.pubsub.redis")

READ_BLOCK_MS = 2000  # below the client's 5 s socket timeout, so a blocked read never times out
ERROR_BACKOFF_MAX = 5.0
CLEANUP_TIMEOUT = 2.0


@dataclass(slots=True)
class RedisStreamsSettings:
    """The component metadata, parsed. Durations are in seconds."""

    connection: RedisConnections
    consumer_id: str = ""  # consumer group; empty = the subscribing app id
    processing_timeout: float = 15.0
    redeliver_interval: float = 60.0
    queue_depth: int = 100
    concurrency: int = 10
    max_len_approx: int = 0  # 0 = never trim

    @property
    def redelivery_enabled(self) -> bool:
        return self.processing_timeout > 0 and self.redeliver_interval > 0

    @property
    def host(self) -> str:
        return self.connection.host

    @property
    def port(self) -> int:
        return self.connection.port

    @property
    def db(self) -> int:
        return self.connection.db

    @property
    def tls(self) -> bool:
        return self.connection.tls

    @property
    def address(self) -> str:
        return self.connection.address


@dataclass(slots=True)
class _Item:
    entry_id: str
    data: bytes
    metadata: dict[str, str]
    delivery_count: int


@dataclass(eq=False)
class _Subscription:
    """One handler's consumer in a group: its reader, reclaimer, workers and local buffer."""

    topic: str
    requested_group: str  # what subscribe() was given, to match unsubscribe()
    group: str  # the Redis consumer group (consumerID wins over the app id)
    consumer: str
    handler: MessageHandler
    queue: asyncio.Queue[_Item]
    outstanding: set[str] = field(default_factory=set)  # ids buffered or in the handler here
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class RedisStreamsBroker(PubSubBroker):
    """Consumer groups on Redis Streams with reclaim-based redelivery; see the module docstring."""

    def __init__(self, settings: RedisStreamsSettings) -> None:
        self.settings = settings
        self._connections: RedisConnections | None = None
        self._subs: list[_Subscription] = []
        self._closed = False

    @classmethod
    def from_spec(cls, spec: ComponentSpec) -> RedisStreamsBroker:
        def duration(key: str, default: str) -> float:
            raw = spec.get(key, default)
            try:
                seconds = parse_go_duration(raw)
            except ValueError as exc:
                raise spec.fail(f"metadata field {key!r}: {exc}") from None
            if seconds < 0:
                raise spec.fail(f"metadata field {key!r} must not be negative, got {raw!r}")
            return seconds

        return cls(
            RedisStreamsSettings(
                connection=RedisConnections.from_spec(spec),
                consumer_id=spec.get("consumerID"),
                processing_timeout=duration("processingTimeout", "15s"),
                redeliver_interval=duration("redeliverInterval", "60s"),
                queue_depth=spec.get_int("queueDepth", 100, 1),
                concurrency=spec.get_int("concurrency", 10, 1),
                max_len_approx=spec.get_int("maxLenApprox", 0, 0),
            )
        )

    # ------------------------------------------------------------------ lifecycle
    async def init(self) -> None:
        self._connections = self.settings.connection
        await self._connections.connect()
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        subs, self._subs = self._subs, []
        for sub in subs:
            await self._stop(sub)
        if self._connections is not None:
            await self._connections.close()

    @property
    def client(self) -> aioredis.Redis:
        if self._connections is None or self._closed:
            raise RuntimeError(
                "pubsub.redis: broker is closed" if self._closed else "pubsub.redis: init() was not called"
            )
        return self._connections.client()

    # ------------------------------------------------------------------ interface
    async def publish(self, topic: str, data: bytes, metadata: dict[str, str]) -> None:
        fields: dict[str, bytes | str] = {"data": bytes(data)}
        if metadata:
            fields["metadata"] = json.dumps(metadata)
        max_len = self.settings.max_len_approx or None
        await self.client.xadd(topic, fields, maxlen=max_len, approximate=True)

    async def subscribe(
        self,
        topic: str,
        consumer_group: str,
        handler: MessageHandler,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        group = self.settings.consumer_id or consumer_group
        if not group:
            raise ValueError("pubsub.redis: no consumer group (set consumerID or subscribe with an app id)")
        await self._ensure_group(topic, group)
        sub = _Subscription(
            topic=topic,
            requested_group=consumer_group,
            group=group,
            consumer=f"{group}-{uuid.uuid4().hex[:12]}",
            handler=handler,
            queue=asyncio.Queue(maxsize=self.settings.queue_depth),
        )
        label = f"{topic}/{sub.consumer}"
        sub.tasks.append(asyncio.create_task(self._read_loop(sub), name=f"redis read {label}"))
        if self.settings.redelivery_enabled:
            sub.tasks.append(asyncio.create_task(self._reclaim_loop(sub), name=f"redis reclaim {label}"))
        for i in range(max(self.settings.concurrency, bulk_in_flight(metadata))):
            sub.tasks.append(asyncio.create_task(self._worker(sub), name=f"redis worker {i} {label}"))
        self._subs.append(sub)

    async def unsubscribe(self, topic: str, consumer_group: str, handler: MessageHandler) -> None:
        for sub in self._subs:
            if sub.topic == topic and sub.requested_group == consumer_group and sub.handler == handler:
                self._subs.remove(sub)
                await self._stop(sub)
                return

    # ------------------------------------------------------------------ consumer internals
    async def _ensure_group(self, topic: str, group: str) -> None:
        try:
            await self.client.xgroup_create(topic, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _stop(self, sub: _Subscription) -> None:
        """Cancel the consumer's tasks (in-flight handlers included, nothing acked) and tidy up.

        Messages it held stay pending in Redis and are reclaimed by the group after
        processingTimeout. The consumer name is deleted only when nothing is pending for it:
        deleting a consumer would orphan its pending entries.
        """
        await cancel_and_wait(sub.tasks)
        sub.tasks.clear()
        if self._connections is None or self._connections.closed:
            return
        client = self._connections.client()
        try:
            async with asyncio.timeout(CLEANUP_TIMEOUT):
                for info in await client.xinfo_consumers(sub.topic, sub.group):
                    if _text(info.get("name")) == sub.consumer and int(info.get("pending", 0)) == 0:
                        await client.xgroup_delconsumer(sub.topic, sub.group, sub.consumer)
        except (RedisError, OSError, TimeoutError) as exc:
            log.debug("redis: could not remove consumer %s: %s", sub.consumer, exc)

    async def _read_loop(self, sub: _Subscription) -> None:
        """XREADGROUP new entries (`>`) into the subscription's buffer until cancelled."""
        delay = 0.1
        while True:
            try:
                reply = await self.client.xreadgroup(
                    sub.group,
                    sub.consumer,
                    {sub.topic: ">"},
                    count=self.settings.queue_depth,
                    block=READ_BLOCK_MS,
                )
                delay = 0.1
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    # The stream or group was deleted (FLUSHALL, a cleanup): recreate it, as daprd does.
                    log.warning("redis: group %s on %s disappeared; recreating it", sub.group, sub.topic)
                    await self._retrying(self._ensure_group(sub.topic, sub.group), delay)
                else:
                    log.error("redis: reading %s for group %s failed: %s", sub.topic, sub.group, exc)
                    await asyncio.sleep(delay)
                delay = min(delay * 2, ERROR_BACKOFF_MAX)
                continue
            except (RedisError, OSError) as exc:
                log.error("redis: reading %s failed (%s); retrying in %.1fs", sub.topic, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, ERROR_BACKOFF_MAX)
                continue
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    await self._enqueue(sub, _text(entry_id), fields, 1)

    async def _retrying(self, call: Any, delay: float) -> None:
        try:
            await call
        except (RedisError, OSError) as exc:
            log.error("redis: %s; retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)

    async def _reclaim_loop(self, sub: _Subscription) -> None:
        """Every redeliverInterval, take over entries idle for longer than processingTimeout."""
        while True:
            try:
                await self._reclaim(sub)
            except (RedisError, OSError) as exc:
                log.error("redis: reclaiming pending entries of %s/%s failed: %s", sub.topic, sub.group, exc)
            await asyncio.sleep(self.settings.redeliver_interval)

    async def _reclaim(self, sub: _Subscription) -> None:
        client = self.client
        min_idle_ms = max(1, int(self.settings.processing_timeout * 1000))
        page = self.settings.queue_depth
        start = "-"
        while True:
            try:
                pending = await client.xpending_range(
                    sub.topic, sub.group, start, "+", page, idle=min_idle_ms
                )
            except ResponseError as exc:
                if "NOGROUP" in str(exc):
                    return  # the read loop recreates the group
                raise
            if not pending:
                return
            times = {
                _text(p["message_id"]): int(p["times_delivered"])
                for p in pending
                if _text(p["message_id"]) not in sub.outstanding
            }
            if times:
                # XCLAIM re-checks the idle time, so an entry another consumer claimed meanwhile is
                # skipped; each claim counts as one more delivery.
                claimed = await client.xclaim(sub.topic, sub.group, sub.consumer, min_idle_ms, list(times))
                for entry_id, fields in claimed:
                    if entry_id is None:
                        continue  # Redis < 7 answers nil for an entry trimmed away; nothing to deliver
                    key = _text(entry_id)
                    if fields is None:  # deleted entry still listed as pending: drop it from the PEL
                        await client.xack(sub.topic, sub.group, key)
                        continue
                    await self._enqueue(sub, key, fields, times.get(key, 1) + 1)
            if len(pending) < page:
                return
            start = "(" + _text(pending[-1]["message_id"])

    async def _enqueue(self, sub: _Subscription, entry_id: str, fields: Any, delivery_count: int) -> None:
        if not fields or entry_id in sub.outstanding:
            return
        data = fields.get(b"data", b"")
        metadata: dict[str, str] = {}
        raw_meta = fields.get(b"metadata")
        if raw_meta:
            try:
                parsed = json.loads(raw_meta)
                metadata = {str(k): str(v) for k, v in parsed.items()}
            except (ValueError, AttributeError) as exc:
                log.warning("redis: entry %s on %s has unreadable metadata: %s", entry_id, sub.topic, exc)
        sub.outstanding.add(entry_id)
        try:
            await sub.queue.put(_Item(entry_id, bytes(data), metadata, delivery_count))
        except BaseException:
            sub.outstanding.discard(entry_id)
            raise

    async def _worker(self, sub: _Subscription) -> None:
        while True:
            item = await sub.queue.get()
            try:
                await self._process(sub, item)
            finally:
                sub.outstanding.discard(item.entry_id)

    async def _process(self, sub: _Subscription, item: _Item) -> None:
        """Call the handler; XACK only when it returns normally."""
        message = BrokerMessage(
            topic=sub.topic, data=item.data, metadata=item.metadata, delivery_count=item.delivery_count
        )
        try:
            if self.settings.redelivery_enabled:
                # As daprd: a handler still running after processingTimeout is given up on, since
                # the reclaimer would hand the message to another consumer from then on anyway.
                async with asyncio.timeout(self.settings.processing_timeout):
                    await sub.handler(message)
            else:
                await sub.handler(message)
        except Exception as exc:
            when = (
                f"redelivered once idle for processingTimeout ({self.settings.processing_timeout:g}s)"
                if self.settings.redelivery_enabled
                else "not redelivered (redelivery disabled)"
            )
            log.warning(
                "redis: handler for %s/%s failed on entry %s (delivery %d): %r; left pending, %s",
                sub.topic,
                sub.group,
                item.entry_id,
                item.delivery_count,
                exc,
                when,
            )
            return
        try:
            await self.client.xack(sub.topic, sub.group, item.entry_id)
        except (RedisError, OSError) as exc:
            log.error(
                "redis: XACK %s on %s failed (it will be redelivered): %s", item.entry_id, sub.topic, exc
            )


async def cancel_and_wait(tasks: list[asyncio.Task[None]], rounds: int = 20) -> None:
    """Cancel tasks and wait until they are done, cancelling again if a cancellation got lost.

    On Python 3.11 a cancellation that lands while `asyncio.timeout` (used around the handler) is
    expiring can be absorbed, leaving the task running; cancelling once more always ends it.
    """
    pending = {t for t in tasks if not t.done()}
    for _ in range(rounds):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
    if pending:
        log.error("redis: %d consumer tasks did not stop when cancelled", len(pending))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
