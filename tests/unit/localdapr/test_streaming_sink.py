"""How a streaming subscription's sink pairs the events it sends with the client's answers."""

from __future__ import annotations

import asyncio
from typing import Any

from dapr.proto import api_v1, appcallback_v1

from localdapr.components.spec import SubscriptionSpec
from localdapr.pubsub.delivery import DROP, RETRY, SUCCESS
from localdapr.pubsub.streaming import StreamSink

SPEC = SubscriptionSpec(pubsub_name="pubsub", topic="t", default_route="/", source="streaming")
Status = appcallback_v1.TopicEventResponse


class FakeStream:
    """The server side of a stream: records what is written, or fails like a stream that is gone."""

    def __init__(self, fail: bool = False) -> None:
        self.sent: list[Any] = []
        self.fail = fail

    async def write(self, message: Any) -> None:
        if self.fail:
            raise RuntimeError("stream gone")
        self.sent.append(message)


def event(event_id: str) -> dict[str, Any]:
    return {"id": event_id, "datacontenttype": "application/json", "data": {"n": 1}, "specversion": "1.0"}


def processed(event_id: str, status: int | None) -> Any:
    answer = api_v1.SubscribeTopicEventsRequestProcessedAlpha1(id=event_id)
    if status is not None:
        answer.status.status = status  # type: ignore[assignment]
    return answer


def open_sink(stream: FakeStream) -> StreamSink:
    sink = StreamSink(stream)  # type: ignore[arg-type]
    sink.open.set()
    return sink


async def sent(stream: FakeStream, count: int) -> None:
    async with asyncio.timeout(2):
        while len(stream.sent) < count:
            await asyncio.sleep(0)


async def test_answers_are_read_as_daprd_reads_them() -> None:
    stream = FakeStream()
    sink = open_sink(stream)
    for status, expected in (
        (Status.SUCCESS, SUCCESS),
        (None, SUCCESS),  # no status set: 0, SUCCESS
        (Status.RETRY, RETRY),
        (Status.DROP, DROP),
        (7, RETRY),  # unknown: retried
    ):
        delivery = asyncio.create_task(sink.deliver(SPEC, "/", event("e"), None))
        await sent(stream, len(stream.sent) + 1)
        sink.answer(processed("e", status))
        outcome, _ = await delivery
        assert outcome == expected, status
    message = stream.sent[0].event_message
    assert (message.id, message.topic, message.pubsub_name, message.path) == ("e", "t", "pubsub", "/")


async def test_events_sharing_an_id_are_answered_in_order() -> None:
    stream = FakeStream()
    sink = open_sink(stream)
    first = asyncio.create_task(sink.deliver(SPEC, "/", event("same"), None))
    await sent(stream, 1)
    second = asyncio.create_task(sink.deliver(SPEC, "/", event("same"), None))
    await sent(stream, 2)
    sink.answer(processed("same", Status.DROP))
    sink.answer(processed("same", Status.SUCCESS))
    assert [(await first)[0], (await second)[0]] == [DROP, SUCCESS]


async def test_no_answer_in_time_or_a_dead_stream_is_a_retry() -> None:
    stream = FakeStream()
    sink = open_sink(stream)
    outcome, detail = await sink.deliver(SPEC, "/", event("slow"), 0.05)
    assert (outcome, detail) == (RETRY, "no answer from the stream within 0.05s")
    sink.answer(processed("slow", Status.SUCCESS))  # too late: ignored

    dead = open_sink(FakeStream(fail=True))
    outcome, detail = await dead.deliver(SPEC, "/", event("x"), None)
    assert outcome == RETRY and "stream gone" in detail


async def test_nothing_is_sent_before_the_initial_response() -> None:
    stream = FakeStream()
    sink = StreamSink(stream)  # type: ignore[arg-type]
    delivery = asyncio.create_task(sink.deliver(SPEC, "/", event("early"), None))
    await asyncio.sleep(0.01)
    assert stream.sent == []
    sink.open.set()
    await sent(stream, 1)
    sink.answer(processed("early", Status.SUCCESS))
    assert (await delivery)[0] == SUCCESS
