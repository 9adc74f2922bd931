"""configuration.redis: configuration items in a real Redis, in components-contrib's layout.

Each item is a plain string key holding `<value>||<version>` (`SET order-limit "100||3"`), so items
written for daprd are read here and the other way round. `get` with no keys reads every key (KEYS *)
and, like contrib, skips keys that are missing, not strings, or have an empty value.

Subscriptions use Redis keyspace notifications: SUBSCRIBE `__keyspace@<db>__:<key>` per key, or
PSUBSCRIBE `__keyspace@<db>__:*` for every key; each notification re-reads its key and hands it to the
subscriber (an item with an empty value when the key is gone). A default Redis sends no keyspace
notifications: like contrib, a subscription turns on the classes it needs (`Kg$xe`) with CONFIG SET,
but adds them to those already set instead of overwriting them, and logs a warning saying so (or, when
CONFIG is refused, that subscriptions will see no changes).

Metadata: `redisHost` (required), `redisPassword`, `redisUsername`, `redisDB`, `enableTLS`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError, ResponseError

from localdapr.components.spec import ComponentSpec
from localdapr.configuration.base import (
    ConfigurationItem,
    ConfigurationStore,
    Items,
    UnknownSubscription,
    UpdateHandler,
)
from localdapr.redisconn import RedisConnections

log = logging.getLogger("localdapr.configuration")

# Keyspace channel (K) for generic commands such as DEL/EXPIRE/RENAME (g), string commands such as SET
# ($), expiry (x) and eviction (e): contrib's notify-keyspace-events.
NEEDED_EVENTS = "Kg$xe"
_ALL_CLASSES = "g$lshzxetd"  # what `A` stands for
_CONFIRM_TIMEOUT = 5.0


def parse_value(raw: str) -> tuple[str, str]:
    """`value||version` -> (value, version), as contrib splits it (further `||` parts are dropped)."""
    parts = raw.split("||")
    return parts[0], parts[1] if len(parts) > 1 else ""


def missing_event_flags(current: str) -> str:
    """The flags of NEEDED_EVENTS that a notify-keyspace-events value `current` lacks."""
    have = set(current) | (set(_ALL_CLASSES) if "A" in current else set())
    return "".join(flag for flag in NEEDED_EVENTS if flag not in have)


class RedisConfigurationStore(ConfigurationStore):
    def __init__(self, connections: RedisConnections) -> None:
        self.connections = connections
        self._subscriptions: dict[str, tuple[asyncio.Task[None], PubSub]] = {}

    @classmethod
    def from_spec(cls, spec: ComponentSpec) -> RedisConfigurationStore:
        return cls(RedisConnections.from_spec(spec))

    async def init(self) -> None:
        await self.connections.connect()

    async def close(self) -> None:
        for subscription_id in list(self._subscriptions):
            await self.unsubscribe(subscription_id)
        await self.connections.close()

    # ------------------------------------------------------------------ get
    async def get(self, keys: Sequence[str], metadata: Mapping[str, str]) -> Items:
        client = self.connections.client()
        names = list(keys) or [k.decode(errors="replace") for k in await client.keys("*")]
        if not names:
            return {}
        async with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.get(name)
            results = await pipe.execute(raise_on_error=False)
        items: Items = {}
        for name, result in zip(names, results, strict=True):
            if isinstance(result, ResponseError) and "WRONGTYPE" in str(result):
                continue  # a hash, stream, ...: not a configuration item
            if isinstance(result, Exception):
                raise result
            if result is None:
                continue
            value, version = parse_value(result.decode(errors="replace"))
            if value:
                items[name] = ConfigurationItem(value, version)
        return items

    # ------------------------------------------------------------------ subscriptions
    async def subscribe(
        self, keys: Sequence[str], metadata: Mapping[str, str], handler: UpdateHandler
    ) -> str:
        await self._enable_keyspace_events()
        prefix = f"__keyspace@{self.connections.db}__:"
        pubsub = self.connections.client().pubsub()
        try:
            if keys:
                channels = {prefix + key for key in keys}
                await pubsub.subscribe(*channels)
                early = await _confirmed(pubsub, len(channels))
            else:
                await pubsub.psubscribe(prefix + "*")
                early = await _confirmed(pubsub, 1)
        except BaseException:
            await pubsub.aclose()
            raise
        subscription_id = str(uuid.uuid4())
        task = asyncio.create_task(
            self._listen(pubsub, prefix, dict(metadata), handler, early),
            name=f"configuration-{subscription_id}",
        )
        self._subscriptions[subscription_id] = (task, pubsub)
        return subscription_id

    async def unsubscribe(self, subscription_id: str) -> None:
        entry = self._subscriptions.pop(subscription_id, None)
        if entry is None:
            raise UnknownSubscription(f"subscription with id {subscription_id} does not exist")
        task, pubsub = entry
        if task.get_loop() is not asyncio.get_running_loop():
            # Another sidecar's loop (thread) owns it: stop it there.
            asyncio.run_coroutine_threadsafe(_stop(task, pubsub), task.get_loop())
            return
        await _stop(task, pubsub)

    async def _listen(
        self, pubsub: PubSub, prefix: str, metadata: dict[str, str], handler: UpdateHandler, early: list[Any]
    ) -> None:
        for message in early:
            await self._notify(message, prefix, metadata, handler)
        while True:
            try:
                async for message in pubsub.listen():
                    if message["type"] in ("message", "pmessage"):
                        await self._notify(message, prefix, metadata, handler)
            except (RedisError, OSError) as exc:
                # The pub/sub connection re-subscribes when it reconnects on the next read.
                log.warning("configuration.redis: subscription connection failed (%s); reconnecting", exc)
                await asyncio.sleep(0.5)

    async def _notify(
        self, message: Any, prefix: str, metadata: dict[str, str], handler: UpdateHandler
    ) -> None:
        key = message["channel"].decode(errors="replace")[len(prefix) :]
        try:
            items = await self.get([key], metadata)
        except (RedisError, OSError) as exc:
            log.error("configuration.redis: reading changed key %r failed: %s", key, exc)
            return
        try:
            await handler(items or {key: ConfigurationItem()})
        except Exception:  # one failing subscriber must not end the subscription
            log.exception("configuration.redis: delivering the change of %r failed", key)

    async def _enable_keyspace_events(self) -> None:
        client = self.connections.client()
        try:
            current = (await client.config_get("notify-keyspace-events")).get("notify-keyspace-events", "")
            missing = missing_event_flags(current)
            if missing:
                await client.config_set("notify-keyspace-events", current + missing)
                log.warning(
                    "configuration.redis: turned on Redis keyspace notifications at %s for configuration "
                    "subscriptions (CONFIG SET notify-keyspace-events %r, was %r)",
                    self.connections.address,
                    current + missing,
                    current,
                )
        except ResponseError as exc:
            log.warning(
                "configuration.redis: cannot check or set notify-keyspace-events at %s (%s); subscriptions "
                "see no changes unless the server's notify-keyspace-events includes %r",
                self.connections.address,
                exc,
                NEEDED_EVENTS,
            )


async def _confirmed(pubsub: PubSub, expected: int) -> list[Any]:
    """Wait until Redis has confirmed `expected` (p)subscriptions, so no change made after `subscribe`
    returns can be missed; notifications that arrive meanwhile are returned, not dropped."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _CONFIRM_TIMEOUT
    confirmed, early = 0, []
    while confirmed < expected:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError(
                f"Redis did not confirm the keyspace subscription within {_CONFIRM_TIMEOUT:.0f}s"
            )
        message = await pubsub.get_message(timeout=remaining)
        if message is None:
            continue
        if message["type"] in ("subscribe", "psubscribe"):
            confirmed += 1
        else:
            early.append(message)
    return early


async def _stop(task: asyncio.Task[None], pubsub: PubSub) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    try:
        await pubsub.aclose()
    except (RedisError, OSError):
        log.debug("configuration.redis: closing a subscription connection failed", exc_info=True)
