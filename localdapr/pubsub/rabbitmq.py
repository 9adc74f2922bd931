"""`pubsub.rabbitmq`: pub/sub on a real RabbitMQ, with components-contrib's topology and metadata.

Topology (what daprd's broker declares, so localdapr and daprd can share one RabbitMQ):

* a topic is an exchange named after it (`exchangeKind`, default fanout; durable per `durable`,
  auto-deleted per `deletedWhenUnused`), declared on first publish or subscribe;
* a consumer group (the app id, or `consumerID`) is a queue `<consumerID>-<topic>` (or the
  subscription's `queueName`) bound to the exchange with each of the subscription's comma-separated
  `routingKey`s (none: ""), declared with `x-queue-type` classic (or the subscription's `queueType`,
  e.g. quorum) and `maxLen` / `maxLenBytes` as `x-max-length(-bytes)`. Replicas of an app consume
  the same queue and compete for its messages;
* `enableDeadLetter`: the queue gets `x-dead-letter-exchange: dlx-<queue>`, a durable fanout
  exchange feeding the lazy queue `dlq-<queue>`; RabbitMQ moves there what is rejected without
  requeue, expires (`ttlInSeconds`) or overflows `maxLen`.

Delivery: a message is acked after the handler returns; when it raises, the message is nacked with
`requeue` = `requeueInFailure` (default false, as daprd: the message is then dropped, or
dead-lettered with `enableDeadLetter`). A requeued message goes back to its place in the queue and is
delivered again at once, possibly to another replica; RabbitMQ adds no delay. `autoAck` acks on
delivery instead. `concurrency: parallel` (default) handles the `prefetchCount` messages in flight
(0 = no limit) concurrently; `single` one at a time. A sidecar that stops or crashes leaves its
unacked messages to RabbitMQ, which requeues them.

Publishing: `deliveryMode` 2 = persistent; `publisherConfirm` waits for the broker's confirm;
request metadata `routingKey`, `ttlInSeconds` (per-message expiration, else the component's
`ttlInSeconds`), `priority`, `contentType`, `messageID`, `correlationID`, `type`. A message published
before any queue is bound to its exchange is dropped by RabbitMQ (as with daprd). Connections are
robust: after a lost connection the client reconnects every `reconnectWaitSeconds` and restores
channels, queues and consumers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)
from aio_pika.exceptions import AMQPError
from yarl import URL

from localdapr.components.spec import ComponentSpec
from localdapr.durations import parse_go_duration
from localdapr.perloop import PerLoop
from localdapr.pubsub.base import BrokerMessage, MessageHandler, PubSubBroker, bulk_in_flight

log = logging.getLogger("localdapr.pubsub.rabbitmq")

EXCHANGE_KINDS = ("fanout", "topic", "direct", "headers", "x-consistent-hash")
QUEUE_TYPES = ("classic", "quorum")
PUBLISH_ATTEMPTS = 3  # as contrib: a publish is tried three times, reconnecting in between
CAPABILITIES = ("TTL",)


@dataclass(slots=True)
class RabbitMQSettings:
    """The component metadata, parsed with contrib's defaults. Durations are in seconds."""

    url: str
    durable: bool = True
    delete_when_unused: bool = True
    auto_ack: bool = False
    requeue_in_failure: bool = False
    enable_dead_letter: bool = False
    delivery_mode: int = 0  # 0 = not set (transient), 1 transient, 2 persistent
    prefetch_count: int = 0  # 0 = no limit
    reconnect_wait: float = 3.0
    max_len: int = 0
    max_len_bytes: int = 0
    exchange_kind: str = "fanout"
    passive_exchanges: bool = False  # exchangeDeclareMode: passive (topology owned elsewhere)
    publisher_confirm: bool = False
    single: bool = False  # concurrency: single
    default_ttl: int | None = None  # ttlInSeconds
    client_name: str = ""
    heartbeat: float = 10.0

    @property
    def address(self) -> str:
        """host:port/vhost for messages (never the password)."""
        url = URL(self.url)
        return f"{url.host}:{url.port or 5672}{url.path or '/'}"


@dataclass(eq=False)
class _Link:
    """One loop's connection, its publishing channel and the exchanges declared on it."""

    connection: AbstractRobustConnection
    channel: AbstractChannel
    exchanges: dict[str, AbstractExchange] = field(default_factory=dict)


@dataclass(eq=False)
class _Subscription:
    topic: str
    group: str
    handler: MessageHandler
    channel: AbstractChannel | None = None
    queue: AbstractQueue | None = None
    consumer_tag: str | None = None
    in_flight: set[asyncio.Task[Any]] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # concurrency: single


class RabbitMQBroker(PubSubBroker):
    capabilities = CAPABILITIES

    def __init__(self, settings: RabbitMQSettings) -> None:
        self.settings = settings
        self._links: PerLoop[_Link] = PerLoop("pubsub.rabbitmq", self._open_link, _close_link)
        self._subs: list[_Subscription] = []

    @classmethod
    def from_spec(cls, spec: ComponentSpec) -> RabbitMQBroker:
        for key in ("caCert", "clientCert", "clientKey", "saslExternal"):
            if spec.get(key):
                raise spec.fail(f"metadata field {key!r}: TLS client certificates are not supported")
        url = spec.get("connectionString") or spec.get("host")  # `host` is contrib's deprecated name
        protocol = spec.get("protocol")
        if url:
            parsed = URL(url)
            if parsed.scheme not in ("amqp", "amqps") or not parsed.host:
                raise spec.fail(
                    "rabbitmq pub/sub error: invalid connection string: expected "
                    "amqp[s]://user:pass@host:port/vhost"
                )
            if protocol and protocol != parsed.scheme:
                raise spec.fail(
                    f"rabbitmq pub/sub error: protocol does not match connection string, protocol: {protocol}"
                )
        else:
            built = URL.build(scheme=protocol or "amqp", host=spec.get("hostname", "localhost"))
            if spec.get("username"):
                built = built.with_user(spec.get("username")).with_password(spec.get("password") or None)
            url = str(built)
        delivery_mode = spec.get_int("deliveryMode", 0, 0)
        if delivery_mode > 2:
            raise spec.fail(
                "rabbitmq pub/sub error: invalid RabbitMQ delivery mode, accepted values are between 0 and 2"
            )
        declare_mode = spec.get("exchangeDeclareMode", "declare").lower()
        if declare_mode not in ("declare", "passive"):
            raise spec.fail(
                f"rabbitmq pub/sub error: invalid RabbitMQ exchange declare mode {declare_mode!r}"
            )
        kind = spec.get("exchangeKind", "fanout")
        if declare_mode == "declare" and kind not in EXCHANGE_KINDS:
            raise spec.fail(f"rabbitmq pub/sub error: invalid RabbitMQ exchange kind {kind!r}")
        concurrency = spec.get("concurrency", "parallel")
        if concurrency not in ("parallel", "single"):
            raise spec.fail(f"invalid value for concurrency: {concurrency!r} (parallel or single)")

        def seconds(key: str, default: str) -> float:
            try:
                return parse_go_duration(spec.get(key, default))
            except ValueError as exc:
                raise spec.fail(f"metadata field {key!r}: {exc}") from None

        ttl = spec.get("ttlInSeconds")
        return cls(
            RabbitMQSettings(
                url=url,
                durable=spec.get_bool("durable", True),
                delete_when_unused=spec.get_bool("deletedWhenUnused", True),
                auto_ack=spec.get_bool("autoAck"),
                requeue_in_failure=spec.get_bool("requeueInFailure"),
                enable_dead_letter=spec.get_bool("enableDeadLetter"),
                delivery_mode=delivery_mode,
                prefetch_count=min(spec.get_int("prefetchCount", 0, 0), 255),  # contrib keeps a uint8
                reconnect_wait=seconds("reconnectWaitSeconds", "3s"),
                max_len=spec.get_int("maxLen", 0, 0),
                max_len_bytes=spec.get_int("maxLenBytes", 0, 0),
                exchange_kind=kind,
                passive_exchanges=declare_mode == "passive",
                publisher_confirm=spec.get_bool("publisherConfirm"),
                single=concurrency == "single",
                default_ttl=int(seconds("ttlInSeconds", "0")) if ttl else None,
                client_name=spec.get("clientName"),
                heartbeat=seconds("heartBeat", "10s"),
            )
        )

    # ------------------------------------------------------------------ lifecycle
    def attach_loop(self) -> None:
        self._links.attach()

    async def detach_loop(self) -> None:
        await self._links.detach()  # the sidecar unsubscribed before releasing its components

    async def init(self) -> None:
        """Connect once on this loop, so a wrong address or password stops the start naming it."""
        self._links.closed = False
        await self._links.get()

    async def close(self) -> None:
        subs, self._subs = self._subs, []
        for sub in subs:
            await self._stop(sub)
        await self._links.close()

    async def _open_link(self) -> _Link:
        s = self.settings
        properties = {"connection_name": s.client_name} if s.client_name else {}
        try:
            connection = await aio_pika.connect_robust(
                s.url,
                reconnect_interval=s.reconnect_wait or 1.0,
                client_properties=properties,
                heartbeat=max(int(s.heartbeat), 0),
                timeout=10,
            )
        except (AMQPError, OSError, TimeoutError) as exc:
            reason = str(exc).strip() or type(exc).__name__
            raise ConnectionError(
                f"pubsub.rabbitmq: cannot connect to RabbitMQ at {s.address} (connectionString): {reason}"
            ) from None
        channel = await connection.channel(publisher_confirms=s.publisher_confirm)
        return _Link(connection, channel)

    # ------------------------------------------------------------------ publish
    async def publish(self, topic: str, data: bytes, metadata: dict[str, str]) -> None:
        last: Exception | None = None
        for attempt in range(1, PUBLISH_ATTEMPTS + 1):
            try:
                link = await self._links.get()
                exchange = await self._exchange(link.channel, topic, link.exchanges)
                await exchange.publish(
                    self._message(data, metadata), routing_key=metadata.get("routingKey", "")
                )
                return
            except (AMQPError, ConnectionError, OSError) as exc:
                last = exc
                log.warning(
                    "rabbitmq: publishing to %s failed (attempt %d/%d): %s",
                    topic,
                    attempt,
                    PUBLISH_ATTEMPTS,
                    exc,
                )
                if attempt < PUBLISH_ATTEMPTS:
                    await asyncio.sleep(self.settings.reconnect_wait)
        raise ConnectionError(f"rabbitmq pub/sub: publishing to {topic} failed: {last}")

    def _message(self, data: bytes, metadata: Mapping[str, str]) -> aio_pika.Message:
        ttl = _int(metadata.get("ttlInSeconds")) or self.settings.default_ttl
        priority = _int(_prop(metadata, "priority"))
        return aio_pika.Message(
            body=bytes(data),
            content_type=_prop(metadata, "contentType") or "text/plain",
            delivery_mode=aio_pika.DeliveryMode(self.settings.delivery_mode)
            if self.settings.delivery_mode
            else None,
            expiration=ttl if ttl and ttl > 0 else None,
            priority=priority,
            message_id=_prop(metadata, "messageID"),
            correlation_id=_prop(metadata, "correlationID"),
            type=_prop(metadata, "type"),
        )

    async def _exchange(
        self, channel: AbstractChannel, name: str, cache: dict[str, AbstractExchange]
    ) -> AbstractExchange:
        found = cache.get(name)
        if found is None:
            s = self.settings
            found = cache[name] = await channel.declare_exchange(
                name,
                s.exchange_kind,
                durable=s.durable,
                auto_delete=s.delete_when_unused,
                passive=s.passive_exchanges,
            )
        return found

    # ------------------------------------------------------------------ subscribe
    async def subscribe(
        self,
        topic: str,
        consumer_group: str,
        handler: MessageHandler,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        meta = dict(metadata or {})
        queue_name = meta.get("queueName") or (f"{consumer_group}-{topic}" if consumer_group else "")
        if not queue_name:
            raise ValueError("consumerID is required for subscriptions that don't specify a queue name")
        s = self.settings
        link = await self._links.get()
        sub = _Subscription(topic, consumer_group, handler)
        sub.channel = channel = await link.connection.channel(publisher_confirms=False)
        if s.prefetch_count:
            prefetch = min(max(s.prefetch_count, bulk_in_flight(meta)), 255)
            await channel.set_qos(prefetch_count=prefetch)
        exchange = await self._exchange(channel, topic, {})
        arguments: dict[str, Any] = {}
        if s.enable_dead_letter:
            dlx = await channel.declare_exchange(
                f"dlx-{queue_name}", "fanout", durable=True, auto_delete=s.delete_when_unused
            )
            dlq = await channel.declare_queue(
                f"dlq-{queue_name}",
                durable=True,
                auto_delete=s.delete_when_unused,
                arguments={**self._length_limits(), "x-queue-mode": "lazy"},
            )
            await dlq.bind(dlx, "")
            arguments["x-dead-letter-exchange"] = dlx.name
        arguments.update(self._length_limits())
        arguments.update(_queue_arguments(meta))
        sub.queue = queue = await channel.declare_queue(
            queue_name, durable=s.durable, auto_delete=s.delete_when_unused, arguments=arguments
        )
        for key in meta.get("routingKey", "").split(","):
            await queue.bind(exchange, key)

        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            assert task is not None
            sub.in_flight.add(task)
            try:
                if s.single:
                    async with sub.lock:
                        await self._deliver(sub, message)
                else:
                    await self._deliver(sub, message)
            finally:
                sub.in_flight.discard(task)

        sub.consumer_tag = await queue.consume(on_message, no_ack=s.auto_ack)
        self._subs.append(sub)
        log.info("rabbitmq: %s consumes %s from exchange %s", consumer_group, queue_name, topic)

    def _length_limits(self) -> dict[str, int]:
        limits = {}
        if self.settings.max_len:
            limits["x-max-length"] = self.settings.max_len
        if self.settings.max_len_bytes:
            limits["x-max-length-bytes"] = self.settings.max_len_bytes
        return limits

    async def _deliver(self, sub: _Subscription, message: AbstractIncomingMessage) -> None:
        headers = {str(k): _text(v) for k, v in (message.headers or {}).items() if v is not None}
        count = _int(headers.get("x-delivery-count"))  # quorum queues count; classic ones only flag
        delivery_count = count + 1 if count is not None else (2 if message.redelivered else 1)
        msg = BrokerMessage(
            topic=sub.topic, data=message.body, metadata=headers, delivery_count=delivery_count
        )
        try:
            await sub.handler(msg)
        except Exception as exc:
            if self.settings.auto_ack:
                log.warning(
                    "rabbitmq: handler for %s/%s failed (autoAck, not redelivered): %r",
                    sub.topic,
                    sub.group,
                    exc,
                )
                return
            requeue = self.settings.requeue_in_failure
            log.warning(
                "rabbitmq: handler for %s/%s failed: %r; nacked, %s",
                sub.topic,
                sub.group,
                exc,
                "requeued"
                if requeue
                else ("to the dead-letter queue" if self.settings.enable_dead_letter else "dropped"),
            )
            await _settle(message.nack(requeue=requeue))
            return
        if not self.settings.auto_ack:
            await _settle(message.ack())

    async def unsubscribe(self, topic: str, consumer_group: str, handler: MessageHandler) -> None:
        for sub in self._subs:
            if sub.topic == topic and sub.group == consumer_group and sub.handler == handler:
                self._subs.remove(sub)
                await self._stop(sub)
                return

    async def _stop(self, sub: _Subscription) -> None:
        """Stop the consumer and its in-flight handlers, then close its channel: RabbitMQ requeues
        every message the subscription had not settled."""
        with contextlib.suppress(AMQPError, OSError, RuntimeError):
            if sub.queue is not None and sub.consumer_tag is not None:
                await sub.queue.cancel(sub.consumer_tag)
        tasks = [t for t in sub.in_flight if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(AMQPError, OSError, RuntimeError):
            if sub.channel is not None:
                await sub.channel.close()


def _queue_arguments(meta: Mapping[str, str]) -> dict[str, Any]:
    """Queue arguments from the subscription's metadata, as contrib reads them."""
    arguments: dict[str, Any] = {}
    queue_type = meta.get("queueType") or "classic"
    if queue_type not in QUEUE_TYPES:
        raise ValueError(f"invalid queue type {queue_type}. Valid types are classic and quorum")
    arguments["x-queue-type"] = queue_type
    if meta.get("maxPriority"):
        arguments["x-max-priority"] = min(int(meta["maxPriority"]), 255)
    if meta.get("singleActiveConsumer", "").lower() in ("true", "1", "t", "yes", "y", "on"):
        arguments["x-single-active-consumer"] = True
    if meta.get("maxLenBytes"):
        arguments["x-max-length-bytes"] = int(meta["maxLenBytes"])
    if meta.get("maxLen"):
        arguments["x-max-length"] = int(meta["maxLen"])
    return arguments


def _prop(metadata: Mapping[str, str], key: str) -> str | None:
    """A request metadata value by key, exact match first, then any case (as contrib's TryGetProperty)."""
    if metadata.get(key):
        return metadata[key]
    return next((v for k, v in metadata.items() if v and k.lower() == key.lower()), None)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


async def _settle(call: Any) -> None:
    """Ack or nack; a channel lost meanwhile means RabbitMQ requeues the message by itself."""
    try:
        await call
    except (AMQPError, OSError, RuntimeError) as exc:
        log.warning("rabbitmq: settling a message failed (RabbitMQ redelivers it): %s", exc)


async def _close_link(link: _Link) -> None:
    await link.connection.close()
