"""`pubsub.mqtt3`: pub/sub on a real MQTT 3.1.1 broker (Mosquitto, EMQX, HiveMQ ...), as daprd's.

A topic is the MQTT topic of the same name, so a gateway on the plant floor can publish straight to the
broker (a CloudEvent JSON, or anything with a `rawPayload` subscription) and the subscribing app gets
it through its sidecar. Wildcard subscriptions (`+`, `#`) and shared subscriptions (`$share/<group>/`)
are routed as contrib routes them.

Sessions, as contrib's component: each consumer group (the app id, or `consumerID`) is one MQTT
client whose client id is that name, connected with `cleanSession` (default false) and subscribed at
`qos` (default 1). With clean session off the broker keeps the session while the app is down: its
subscriptions, the QoS 1/2 messages published meanwhile, and the messages it had received but not
acknowledged, which the broker sends again when the client reconnects. Subscriptions are never
unsubscribed when a sidecar stops (unless `cleanSession` is true or the subscription's
`unsubscribeOnClose` metadata is), so nothing published while it is down is lost.

Delivery: messages are handled concurrently; the PUBACK is sent only after the handler returned.
When the handler raises, localdapr keeps the PUBACK back and hands the message to the handler again
after a backoff of 50 ms doubling to 2 s, until it succeeds. daprd's component sends no PUBACK either
but does not retry: MQTT 3 has no negative acknowledgement, so the broker redelivers only when the
session reconnects.

Publishing: QoS `qos`, retained per `retain` (default false) or the request's `retain` metadata;
returns once the broker acknowledged it (QoS >= 1), within 20 s. Received messages carry the metadata
`retained`. Each localdapr broker instance publishes on a client of its own (clean session, client id
`localdapr-pub-<random>`): daprd publishes on the consumer's client, but here one instance serves
every app of the process and a publish does not say which app it is from.

What the broker does not give, as daprd's docs say: a topic published before any session subscribed
to it is lost (MQTT keeps messages only for existing sessions; `retain` keeps the last one); a broker
queues only so many messages for an offline session (Mosquitto: `max_queued_messages`, 1000 by
default) and drops the rest; two processes connecting with one client id take the session from each
other, so replicas of an app in different processes need distinct consumerIDs (or `$share/`
subscriptions). Replicas in one localdapr process share the group's client and split its messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from localdapr.components.spec import ComponentSpec
from localdapr.pubsub.base import BrokerMessage, MessageHandler, PubSubBroker

log = logging.getLogger("localdapr.pubsub.mqtt")

DEFAULT_WAIT = 20.0  # contrib's defaultWait for connect, subscribe and publish
BACKOFF_INITIAL = 0.05
BACKOFF_MAX = 2.0
KEEPALIVE = 30
_SHARED = re.compile(r"^\$share/[^/]+/")
_SCHEMES = {"mqtt": False, "tcp": False, "mqtts": True, "ssl": True, "tcps": True, "tls": True}


@dataclass(slots=True)
class MQTTSettings:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    qos: int = 1
    retain: bool = False
    clean_session: bool = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(eq=False)
class _Subscription:
    topic: str  # the filter as subscribed (may hold wildcards or a $share/ prefix)
    handler: MessageHandler
    loop: asyncio.AbstractEventLoop
    unsubscribe_on_close: bool
    deliveries: set[asyncio.Task[None]] = field(default_factory=set)

    def matches(self, topic: str) -> bool:
        return paho.topic_matches_sub(_SHARED.sub("", self.topic), topic)


class _Client:
    """One paho client with its network thread, bridged to asyncio.

    paho calls back on its own thread; futures of the loops waiting on a SUBACK or PUBACK are
    completed with call_soon_threadsafe. `_lock` is held while a request is sent and its message id
    registered, and by the callbacks, so an acknowledgement can never arrive before its waiter.
    """

    def __init__(self, settings: MQTTSettings, client_id: str, clean_session: bool) -> None:
        self.settings = settings
        self.client_id = client_id
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean_session,
            protocol=paho.MQTTv311,
            manual_ack=True,
        )
        if settings.username:
            self.client.username_pw_set(settings.username, settings.password)
        if settings.tls:
            self.client.tls_set()
        self.client.reconnect_delay_set(1, 20)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_ack
        self.client.on_unsubscribe = self._on_ack
        self.client.on_publish = self._on_publish
        self._lock = threading.Lock()
        self._waiters: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = {}
        self._connack: tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]] | None = None
        self.filters: dict[str, int] = {}  # resubscribed on every (re)connect
        # Counts connections: a message id is only meaningful on the connection that delivered it, so
        # a PUBACK for a message received before a reconnect is never sent (the broker resends it).
        self.generation = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        connack: asyncio.Future[Any] = loop.create_future()
        self._connack = (loop, connack)
        s = self.settings
        try:
            async with asyncio.timeout(DEFAULT_WAIT):
                await asyncio.to_thread(self.client.connect, s.host, s.port, KEEPALIVE)
                self.client.loop_start()
                await connack
        except (OSError, TimeoutError, ConnectionError) as exc:
            self.client.loop_stop()
            reason = str(exc).strip() or type(exc).__name__
            raise ConnectionError(
                f"pubsub.mqtt3: cannot connect to the MQTT broker at {s.address} (url): {reason}"
            ) from None

    async def stop(self) -> None:
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)

    async def request(self, send: Any) -> Any:
        """Send a SUBSCRIBE / UNSUBSCRIBE / PUBLISH (`send()` returns (rc, mid)) and await its ack."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            rc, mid = send()
            if rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
                raise ConnectionError(f"pubsub.mqtt3: {paho.error_string(rc)}")
            # MQTT_ERR_NO_CONN: paho queues QoS > 0 requests and sends them once reconnected.
            self._waiters[mid] = (loop, future)
        try:
            async with asyncio.timeout(DEFAULT_WAIT):
                return await future
        finally:
            with self._lock:
                self._waiters.pop(mid, None)

    # ---------------------------------------------------------------- paho thread
    def _on_connect(self, client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self._resolve_connack(ConnectionError(f"broker refused the connection: {reason}"))
            return
        self.generation += 1
        if self.filters:
            # As contrib's OnConnect: subscribe again to everything (the broker may have lost the session).
            client.subscribe(list(dict(self.filters).items()))  # dict() copies atomically
        self._resolve_connack(None)

    def _resolve_connack(self, error: Exception | None) -> None:
        if self._connack is None:
            if error is not None:
                log.error("mqtt: %s: %s", self.client_id, error)
            return
        loop, future = self._connack
        self._connack = None
        loop.call_soon_threadsafe(_settle_future, future, error, None)

    def _on_disconnect(
        self, _client: paho.Client, _userdata: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:
            log.warning("mqtt: %s lost its connection (%s); reconnecting", self.client_id, reason)

    def _on_ack(self, _client: paho.Client, _userdata: Any, mid: int, reasons: Any, _props: Any) -> None:
        failed = [r for r in reasons if getattr(r, "is_failure", False)] if isinstance(reasons, list) else []
        self._resolve(mid, ConnectionError(f"broker refused: {failed[0]}") if failed else None)

    def _on_publish(self, _client: paho.Client, _userdata: Any, mid: int, reason: Any, _props: Any) -> None:
        self._resolve(mid, ConnectionError(f"broker refused: {reason}") if reason.is_failure else None)

    def _resolve(self, mid: int, error: Exception | None) -> None:
        with self._lock:
            waiter = self._waiters.pop(mid, None)
        if waiter is not None:
            waiter[0].call_soon_threadsafe(_settle_future, waiter[1], error, mid)


class _Group:
    """A consumer group's MQTT client and the subscriptions (replicas) it feeds.

    Messages can arrive before the subscription they are for: a kept session gets its queued messages
    right after the CONNACK, while the app's other subscriptions are still being made. Those wait in
    `parked` (unacknowledged) until a matching subscription arrives. `lock` guards both lists, which
    paho's thread reads.
    """

    def __init__(self, client: _Client) -> None:
        self.client = client
        self.subs: list[_Subscription] = []
        self.parked: list[tuple[paho.MQTTMessage, int]] = []  # (message, connection generation)
        self.lock = threading.Lock()
        self._next = 0

    def pick(self, topic: str) -> _Subscription | None:
        """A subscription for `topic`: exact filters first, then wildcards (as contrib); round robin."""
        exact = [s for s in self.subs if _SHARED.sub("", s.topic) == topic]
        candidates = exact or [s for s in self.subs if s.matches(topic)]
        if not candidates:
            return None
        self._next += 1
        return candidates[self._next % len(candidates)]

    def add(self, sub: _Subscription) -> list[tuple[paho.MQTTMessage, int]]:
        """Register `sub`; returns the parked messages it takes over."""
        with self.lock:
            self.subs.append(sub)
            mine = [p for p in self.parked if sub.matches(p[0].topic)]
            self.parked = [p for p in self.parked if not sub.matches(p[0].topic)]
        return mine

    def remove(self, sub: _Subscription) -> None:
        with self.lock:
            self.subs.remove(sub)


class MQTTBroker(PubSubBroker):
    capabilities = ("SUBSCRIBE_WILDCARDS",)

    def __init__(self, settings: MQTTSettings) -> None:
        self.settings = settings
        self._publisher: _Client | None = None
        self._groups: dict[str, _Group] = {}
        # asyncio locks belong to one loop, and sidecars of one process may run on several (tests).
        self._locks: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}

    @classmethod
    def from_spec(cls, spec: ComponentSpec) -> MQTTBroker:
        for key in ("caCert", "clientCert", "clientKey"):
            if spec.get(key):
                raise spec.fail(f"metadata field {key!r}: TLS client certificates are not supported")
        raw = spec.get("url")
        if not raw:
            raise spec.fail("missing url")
        parts = urlsplit(raw)
        if parts.scheme not in _SCHEMES or not parts.hostname:
            raise spec.fail(
                f"metadata field 'url' must be like tcp://host:1883 or ssl://host:8883, got {raw!r}"
            )
        tls = _SCHEMES[parts.scheme]
        qos = spec.get_int("qos", 1, 0)
        if qos > 2:
            raise spec.fail(f"invalid qos {qos}: MQTT QoS is 0, 1 or 2")
        return cls(
            MQTTSettings(
                host=parts.hostname,
                port=parts.port or (8883 if tls else 1883),
                tls=tls,
                username=unquote(parts.username) if parts.username else None,
                password=unquote(parts.password) if parts.password else None,
                qos=qos,
                retain=spec.get_bool("retain"),
                clean_session=spec.get_bool("cleanSession"),
            )
        )

    # ------------------------------------------------------------------ lifecycle
    async def init(self) -> None:
        self._publisher = _Client(self.settings, f"localdapr-pub-{uuid.uuid4().hex[:12]}", clean_session=True)
        await self._publisher.start()

    async def close(self) -> None:
        groups, self._groups = self._groups, {}
        for group in groups.values():
            for sub in group.subs:
                await _cancel(sub)
            await group.client.stop()
        if self._publisher is not None:
            await self._publisher.stop()
            self._publisher = None

    # ------------------------------------------------------------------ interface
    async def publish(self, topic: str, data: bytes, metadata: dict[str, str]) -> None:
        if self._publisher is None:
            raise RuntimeError("pubsub.mqtt3: component is closed")
        if not topic:
            raise ValueError("topic name is empty")
        retain = self.settings.retain
        if metadata.get("retain"):
            value = metadata["retain"].lower()
            if value not in ("true", "false", "1", "0", "t", "f"):
                raise ValueError(f"mqtt invalid retain {metadata['retain']}")
            retain = value in ("true", "1", "t")
        publisher = self._publisher

        def send() -> tuple[int, int]:
            info = publisher.client.publish(topic, bytes(data), self.settings.qos, retain)
            return info.rc, info.mid

        try:
            await publisher.request(send)
        except (ConnectionError, TimeoutError) as exc:
            raise ConnectionError(f"failed to publish: {exc}") from None

    async def subscribe(
        self,
        topic: str,
        consumer_group: str,
        handler: MessageHandler,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        if not topic:
            raise ValueError("topic name is empty")
        if not consumer_group:
            raise ValueError("missing consumerID")
        close_flag = (metadata or {}).get("unsubscribeOnClose", "").lower() in ("true", "1", "t", "yes")
        sub = _Subscription(topic, handler, asyncio.get_running_loop(), close_flag)
        async with self._lock():
            group = self._groups.get(consumer_group)
            fresh = group is None
            if group is None:
                client = _Client(self.settings, consumer_group, self.settings.clean_session)
                group = _Group(client)
                client.client.on_message = lambda _c, _u, message, g=group: self._on_message(g, message)
            # Before connecting: a kept session gets its queued messages right after the CONNACK.
            for message, generation in group.add(sub):
                self._start(group, sub, message, generation)
            try:
                if fresh:
                    await group.client.start()
                    self._groups[consumer_group] = group
                if topic not in group.client.filters:
                    group.client.filters[topic] = self.settings.qos
                    await group.client.request(
                        lambda: group.client.client.subscribe(topic, self.settings.qos)
                    )
            except BaseException:
                group.remove(sub)
                raise
        log.info("mqtt: %s subscribed to %s (qos %d)", consumer_group, topic, self.settings.qos)

    async def unsubscribe(self, topic: str, consumer_group: str, handler: MessageHandler) -> None:
        async with self._lock():
            group = self._groups.get(consumer_group)
            sub = (
                next((s for s in group.subs if s.topic == topic and s.handler == handler), None)
                if group
                else None
            )
            if group is None or sub is None:
                return
            group.remove(sub)
            await _cancel(sub)  # unacked: the broker sends them again when the session reconnects
            if not any(s.topic == topic for s in group.subs):
                if self.settings.clean_session or sub.unsubscribe_on_close:
                    group.client.filters.pop(topic, None)
                    with contextlib.suppress(ConnectionError, TimeoutError):
                        await group.client.request(lambda: group.client.client.unsubscribe(topic))
            if not group.subs:
                del self._groups[consumer_group]
                await group.client.stop()

    def _lock(self) -> asyncio.Lock:
        return self._locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())

    # ------------------------------------------------------------------ delivery
    def _on_message(self, group: _Group, message: paho.MQTTMessage) -> None:
        """paho's thread: hand the message to a subscription's loop (it must not block here)."""
        generation = group.client.generation
        with group.lock:
            sub = group.pick(message.topic)
            if sub is None:
                group.parked.append((message, generation))
                log.debug(
                    "mqtt: %s holds a message on %s until it subscribes",
                    group.client.client_id,
                    message.topic,
                )
                return
        with contextlib.suppress(RuntimeError):  # that loop is closed: the broker redelivers later
            sub.loop.call_soon_threadsafe(self._start, group, sub, message, generation)

    def _start(self, group: _Group, sub: _Subscription, message: paho.MQTTMessage, generation: int) -> None:
        task = asyncio.get_running_loop().create_task(
            self._deliver(group, sub, message, generation), name=f"mqtt deliver {message.topic}"
        )
        sub.deliveries.add(task)
        task.add_done_callback(sub.deliveries.discard)

    async def _deliver(
        self, group: _Group, sub: _Subscription, message: paho.MQTTMessage, generation: int
    ) -> None:
        """Call handlers until one succeeds, then PUBACK (on the connection the message came on)."""
        delay, attempt = BACKOFF_INITIAL, 0
        while True:
            attempt += 1
            msg = BrokerMessage(
                topic=message.topic,
                data=bytes(message.payload),
                metadata={"retained": "true" if message.retain else "false"},
                delivery_count=attempt + (1 if message.dup else 0),
            )
            try:
                await sub.handler(msg)
                break
            except Exception as exc:
                log.warning(
                    "mqtt: handler for %s failed on delivery %d (%r); trying again in %.2fs",
                    message.topic,
                    attempt,
                    exc,
                    delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF_MAX)
            if sub not in group.subs:
                return  # this replica stopped; the broker redelivers when the session reconnects
        if group.client.generation == generation:
            group.client.client.ack(message.mid, message.qos)


async def check_connection(settings: MQTTSettings) -> None:
    """Connect once with a throwaway clean session, then disconnect (`vigil doctor`)."""
    client = _Client(settings, f"localdapr-check-{uuid.uuid4().hex[:8]}", clean_session=True)
    await client.start()
    await client.stop()


def _settle_future(future: asyncio.Future[Any], error: Exception | None, value: Any) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


async def _cancel(sub: _Subscription) -> None:
    """Stop a subscription's deliveries (on its own loop) without acknowledging them."""
    tasks = list(sub.deliveries)
    if not tasks:
        return
    if sub.loop is asyncio.get_running_loop():
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    elif not sub.loop.is_closed():
        for task in tasks:
            sub.loop.call_soon_threadsafe(task.cancel)
