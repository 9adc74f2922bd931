"""The interface every pub/sub broker implements.

The broker moves opaque bytes (a CloudEvent JSON, or a raw payload) between publishers and consumer
groups. A consumer group is an app id: every app subscribed to a topic gets each message once
(competing consumers when an app has several replicas). The handler given to `subscribe` returns
normally when the message was processed (ack) and raises when it was not (the broker redelivers).
Delivery semantics are at-least-once.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field


@dataclass(slots=True)
class BrokerMessage:
    topic: str
    data: bytes
    metadata: dict[str, str] = field(default_factory=dict)
    delivery_count: int = 1  # how many times this message has been handed to a consumer (redelivery > 1)


MessageHandler = Callable[[BrokerMessage], Awaitable[None]]

# Subscription metadata the Subscriber adds for a bulkSubscribe subscription (never sent to the app):
# its maxMessagesCount. Its handler returns only once the batch it joined was delivered, so a broker
# that bounds the messages in flight per subscription (in-memory `concurrency`, Redis `concurrency`)
# allows at least this many there, or no batch could fill.
BULK_IN_FLIGHT = "localdapr.bulkInFlight"


def bulk_in_flight(metadata: Mapping[str, str] | None) -> int:
    """The BULK_IN_FLIGHT a subscription asks for; 0 when it is not a bulk one."""
    try:
        return max(0, int((metadata or {}).get(BULK_IN_FLIGHT, 0)))
    except ValueError:
        return 0


class NotProcessed(Exception):
    """Raised by a handler: the message was not processed and must be redelivered by the broker."""


class PubSubBroker(abc.ABC):
    capabilities: tuple[str, ...] = ()

    async def init(self) -> None:  # noqa: B027 - optional hook
        """Connect; raise an Exception with a clear message on failure."""

    @abc.abstractmethod
    async def publish(self, topic: str, data: bytes, metadata: dict[str, str]) -> None: ...

    @abc.abstractmethod
    async def subscribe(
        self,
        topic: str,
        consumer_group: str,
        handler: MessageHandler,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Start delivering `topic` to `handler` for `consumer_group` until close()/unsubscribe.

        `metadata` is the subscription's (e.g. pubsub.rabbitmq's `routingKey`, `queueName`); brokers
        without subscription options ignore it.
        """

    @abc.abstractmethod
    async def unsubscribe(self, topic: str, consumer_group: str, handler: MessageHandler) -> None:
        """Stop delivering to this handler (a sidecar stopping); unacked messages stay for redelivery."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop consumers and release connections."""
