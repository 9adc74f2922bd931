"""Streaming subscriptions: the gRPC `SubscribeTopicEventsAlpha1` stream, as daprd serves it.

A client (the SDK's `DaprClient.subscribe(...)` / `subscribe_with_handler(...)`, sync or aio) opens a
bidirectional stream and sends a `SubscribeTopicEventsRequestInitialAlpha1` (pubsub, topic, metadata,
dead-letter topic). The sidecar subscribes to the broker like a programmatic subscription (the
pubsub's `consumerID`, else the app id, as consumer group; default route "/"), answers with a
`SubscribeTopicEventsResponseInitialAlpha1`, then sends each message as an `event_message`
(the `TopicEventRequest` daprd builds for gRPC apps) and waits for the client's
`SubscribeTopicEventsRequestProcessedAlpha1` with the same id: SUCCESS acks, RETRY is retried under
the pubsub's inbound resiliency policy then handed back to the broker (or dead-lettered), DROP drops
it (to the dead-letter topic when one is set). Delivery runs through the common Subscriber, so every
broker works and behaves as it does for the app's own subscriptions.

The stream ends when the client closes or cancels it, or when the sidecar stops (then without an
error, as daprd ends streams when its API server closes, so the SDK reconnects). Ending it unsubscribes
from the broker, which keeps every message the client had not acked for redelivery.

Errors are daprd's: an empty pubsub or topic, a first message that is not the initial request and a
second initial request end the stream with UNKNOWN and daprd's message; an unknown pubsub is
INVALID_ARGUMENT "pubsub X is not found" with an ErrorInfo `DAPR_PUBSUB_NOT_FOUND` (no metadata, as
daprd builds it for streams). Several streams on one pubsub and topic are allowed, as since daprd 1.16:
they, and the app's own subscription to that topic, share the consumer group.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
from dapr.proto import api_v1, appcallback_v1

from localdapr import errors
from localdapr.components.spec import SubscriptionSpec
from localdapr.pubsub.delivery import RETRY, TOPIC_EVENT_STATUS, Subscriber, topic_event_request
from localdapr.resiliency import Resiliency
from localdapr.runtime import DaprRuntime

log = logging.getLogger("localdapr.pubsub.streaming")

STREAM_ROUTE = "/"  # daprd gives every streaming subscription this default route (the envelope's path)
_REQUEST_TYPE = "subscribe_topic_events_request_type"


class StreamSink:
    """A TopicSink whose "app" is one client stream: it sends each event and waits for its answer."""

    def __init__(self, context: grpc.aio.ServicerContext) -> None:
        self._context = context
        # Broker workers deliver concurrently (pubsub.redis); gRPC needs one write at a time.
        self._write_lock = asyncio.Lock()
        # Events sent and not yet answered, by id; a list because a publisher may reuse an id.
        self._waiting: dict[str, list[asyncio.Future[int]]] = {}
        # Nothing may be sent before the initial response, yet the broker can deliver as soon as
        # the subscription exists, which is before that response goes out.
        self.open = asyncio.Event()

    async def subscriptions(self) -> list[SubscriptionSpec]:
        """None to discover: a stream's one subscription is its initial request."""
        return []

    async def deliver(
        self, spec: SubscriptionSpec, route: str, event: dict[str, Any], timeout: float | None
    ) -> tuple[str, str]:
        try:
            request = topic_event_request(spec, route, event)
        except ValueError as exc:
            return RETRY, str(exc)
        await self.open.wait()
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(request.id, []).append(answer)
        try:
            try:
                message = api_v1.SubscribeTopicEventsResponseAlpha1(event_message=request)
                async with self._write_lock:
                    await self._context.write(message)
            except Exception as exc:  # the client is gone; what the broker holds is redelivered
                return RETRY, f"sending to the stream failed: {exc!r}"
            try:
                async with asyncio.timeout(timeout):
                    status = await answer
            except TimeoutError:
                return RETRY, f"no answer from the stream within {timeout:g}s"
        finally:
            self._forget(request.id, answer)
        statuses = appcallback_v1.TopicEventResponse.TopicEventResponseStatus
        detail = statuses.Name(status) if status in statuses.values() else str(status)
        return TOPIC_EVENT_STATUS.get(status, RETRY), f"status {detail}"  # unknown: retried, as daprd

    def answer(self, processed: Any) -> None:
        """The client's SubscribeTopicEventsRequestProcessedAlpha1 for an event sent earlier."""
        waiting = self._waiting.get(processed.id)
        if not waiting:
            # daprd logs it too: an answer after its delivery timed out, or to an id never sent.
            log.warning("stream answered event %r, which is not awaiting an answer", processed.id)
            return
        future = waiting[0]
        self._forget(processed.id, future)
        if not future.done():  # its delivery may be ending (cancelled) in this very turn of the loop
            future.set_result(processed.status.status)  # unset status = 0 = SUCCESS, as daprd reads it

    def _forget(self, event_id: str, future: asyncio.Future[int]) -> None:
        waiting = self._waiting.get(event_id, [])
        if future in waiting:
            waiting.remove(future)
        if not waiting:
            self._waiting.pop(event_id, None)


class StreamingSubscriptions:
    """One sidecar's streaming subscriptions: serves each stream, lists them, ends them all on stop."""

    def __init__(self, runtime: DaprRuntime, resiliency: Resiliency) -> None:
        self.runtime = runtime
        self.resiliency = resiliency
        self.active: list[SubscriptionSpec] = []
        self._closing = asyncio.Event()
        self._finished: set[asyncio.Event] = set()  # one per stream being served, set once unsubscribed

    def metadata(self) -> list[dict[str, Any]]:
        """The streams as GetMetadata lists them (daprd: type STREAMING, one rule with path "/")."""
        entries = []
        for spec in self.active:
            entry: dict[str, Any] = {
                "pubsubname": spec.pubsub_name,
                "topic": spec.topic,
                "metadata": spec.metadata,
                "rules": [{"path": STREAM_ROUTE}],
                "type": "STREAMING",
            }
            if spec.dead_letter_topic:
                entry["deadLetterTopic"] = spec.dead_letter_topic
            entries.append(entry)
        return entries

    async def close(self) -> None:
        """End every stream (without an error, so clients reconnect) and wait for their unsubscribes."""
        self._closing.set()
        await asyncio.gather(*(finished.wait() for finished in self._finished))

    async def serve(self, context: grpc.aio.ServicerContext) -> None:
        """The whole life of one SubscribeTopicEventsAlpha1 call."""
        first = await context.read()
        if first is grpc.aio.EOF:
            return  # closed before asking for anything
        if first.WhichOneof(_REQUEST_TYPE) != "initial_request":
            await context.abort(grpc.StatusCode.UNKNOWN, "initial request is required")
        initial = first.initial_request
        if not initial.pubsub_name:
            await context.abort(grpc.StatusCode.UNKNOWN, "pubsubName is required")
        if not initial.topic:
            await context.abort(grpc.StatusCode.UNKNOWN, "topic is required")
        if initial.pubsub_name not in self.runtime.pubsubs:
            # daprd's streaming path builds this error without metadata (and never "not configured").
            raise errors.pubsub_not_found(initial.pubsub_name, "")
        if not self.runtime.pubsubs[initial.pubsub_name].scopes.may_subscribe(initial.topic):
            # Refused as the declared and programmatic ones are (subscriptionScopes, allowedTopics).
            await context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"subscription to topic {initial.topic} on pubsub {initial.pubsub_name} is not allowed",
            )
        if self._closing.is_set():
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the sidecar is shutting down")
        spec = SubscriptionSpec(
            pubsub_name=initial.pubsub_name,
            topic=initial.topic,
            default_route=STREAM_ROUTE,
            dead_letter_topic=initial.dead_letter_topic or None,
            metadata=dict(initial.metadata),
            source="streaming",
        )
        sink = StreamSink(context)
        subscriber = Subscriber(self.runtime, sink, self.resiliency)
        finished = asyncio.Event()
        self._finished.add(finished)
        try:
            try:
                await subscriber.add(spec)
            except Exception as exc:
                log.exception("[%s] streaming subscription to %s failed", self.runtime.app_id, spec.topic)
                await context.abort(
                    grpc.StatusCode.UNKNOWN, f"failed to create subscription for {spec.pubsub_name}: {exc}"
                )
            self.active.append(spec)
            await context.write(
                api_v1.SubscribeTopicEventsResponseAlpha1(
                    initial_response=api_v1.SubscribeTopicEventsResponseInitialAlpha1()
                )
            )
            sink.open.set()
            await self._read_answers(context, sink)
        finally:
            # Shielded: a client that cancels the call cancels this task, and the broker must still be
            # told, or it would keep delivering to a stream that is gone.
            await asyncio.shield(self._end(spec, subscriber, finished))

    async def _end(self, spec: SubscriptionSpec, subscriber: Subscriber, finished: asyncio.Event) -> None:
        """Unsubscribe (the broker keeps what was not acked), then unlist the stream."""
        try:
            await subscriber.stop()
        finally:
            if spec in self.active:
                self.active.remove(spec)
            finished.set()
            self._finished.discard(finished)
        log.info("[%s] stream on %s/%s ended", self.runtime.app_id, spec.pubsub_name, spec.topic)

    async def _read_answers(self, context: grpc.aio.ServicerContext, sink: StreamSink) -> None:
        """Hand the client's answers to the sink until it closes its side or the sidecar stops."""
        closing = asyncio.ensure_future(self._closing.wait())
        reading: asyncio.Future[Any] = asyncio.ensure_future(context.read())
        try:
            while True:
                await asyncio.wait({reading, closing}, return_when=asyncio.FIRST_COMPLETED)
                if not reading.done():
                    return  # the sidecar stops
                message = reading.result()
                if message is grpc.aio.EOF:
                    return
                if message.WhichOneof(_REQUEST_TYPE) != "event_processed":
                    await context.abort(grpc.StatusCode.UNKNOWN, "duplicate initial request received")
                sink.answer(message.event_processed)
                reading = asyncio.ensure_future(context.read())
        finally:
            for waiter in (reading, closing):
                waiter.cancel()
            reading.add_done_callback(_collect)


async def subscribe_topic_events(api: Any, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
    """`SubscribeTopicEventsAlpha1`; the requests are read with `context.read()`, not the iterator."""
    await api.ctx.streams.serve(context)


def _collect(read: asyncio.Future[Any]) -> None:
    """Retrieve how an abandoned read ended (the client may have failed it), so asyncio does not warn."""
    if not read.cancelled():
        read.exception()
