"""bulkSubscribe: how a subscription asks for it, how the app's bulk answer is read, and how the
Subscriber batches a broker's messages and settles each one (ack, dead letter or redelivery)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from localdapr.components.spec import (
    BulkSubscribe,
    ComponentSpec,
    SubscriptionSpec,
    load_resources,
    parse_bulk_subscribe,
)
from localdapr.errors import ComponentError
from localdapr.pubsub.base import BULK_IN_FLIGHT, BrokerMessage, bulk_in_flight
from localdapr.pubsub.delivery import (
    BULK_EVENT_TYPE,
    DROP,
    RETRY,
    SUCCESS,
    BulkBatcher,
    Subscriber,
    bulk_envelope,
    bulk_outcomes,
)
from localdapr.pubsub.memory import InMemoryBroker
from localdapr.resiliency import Resiliency
from localdapr.runtime import DaprRuntime, LoadedPubSub

# ---------------------------------------------------------------------- the subscription's bulkSubscribe


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ({"enabled": False, "maxMessagesCount": 5}, None),
        ({"enabled": "false"}, None),
        ({"enabled": True}, BulkSubscribe(100, 1000)),  # daprd's defaults
        ({"enabled": "true", "maxMessagesCount": "7", "maxAwaitDurationMs": 15}, BulkSubscribe(7, 15)),
        ({"enabled": True, "maxMessagesCount": 0}, BulkSubscribe(100, 1000)),  # zero: the default
    ],
)
def test_bulk_subscribe_settings_are_read(raw: Any, expected: BulkSubscribe | None) -> None:
    assert parse_bulk_subscribe(raw, "here") == expected


@pytest.mark.parametrize(
    "raw",
    [["enabled"], {"enabled": True, "maxMessagesCount": "many"}, {"enabled": True, "maxAwaitDurationMs": -5}],
)
def test_unreadable_bulk_subscribe_is_refused_naming_the_field(raw: Any) -> None:
    with pytest.raises(ValueError, match="here: bulkSubscribe"):
        parse_bulk_subscribe(raw, "here")


def _subscription_yaml(bulk: str) -> str:
    return (
        "apiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata: {name: s}\n"
        "spec:\n  pubsubname: pubsub\n  topic: t\n  routes: {default: /t}\n" + bulk
    )


def test_declarative_subscription_carries_bulk_subscribe(tmp_path: Path) -> None:
    (tmp_path / "sub.yaml").write_text(
        _subscription_yaml("  bulkSubscribe: {enabled: true, maxMessagesCount: 3, maxAwaitDurationMs: 40}\n")
    )
    (spec,) = load_resources([tmp_path]).subscriptions
    assert spec.bulk == BulkSubscribe(3, 40)


def test_declarative_subscription_with_a_bad_bulk_subscribe_stops_the_load(tmp_path: Path) -> None:
    (tmp_path / "sub.yaml").write_text(
        _subscription_yaml("  bulkSubscribe: {enabled: true, maxMessagesCount: x}\n")
    )
    with pytest.raises(ComponentError, match="sub.yaml: subscription 's': bulkSubscribe.maxMessagesCount"):
        load_resources([tmp_path])


# ---------------------------------------------------------------------- the app's answer


IDS = ["a", "b", "c"]


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            200,
            b'{"statuses": [{"entryId": "a", "status": "SUCCESS"}, {"entryId": "b", "status": "DROP"},'
            b' {"entryId": "c", "status": "RETRY"}]}',
            [SUCCESS, DROP, RETRY],
        ),
        # Not mentioned, an empty or unknown status, or an id never sent: retried / ignored.
        (
            200,
            b'{"statuses": [{"entryId": "a", "status": ""}, {"entryId": "b", "status": "success"},'
            b' {"entryId": "zz", "status": "SUCCESS"}]}',
            [RETRY, RETRY, RETRY],
        ),
        (200, b"", [RETRY] * 3),  # unlike one event: an unreadable answer is not a success
        (200, b"not json", [RETRY] * 3),
        (200, b'{"status": "SUCCESS"}', [RETRY] * 3),
        (204, b"", [RETRY] * 3),
        (404, b"", [DROP] * 3),
        (500, b'{"statuses": [{"entryId": "a", "status": "SUCCESS"}]}', [RETRY] * 3),
    ],
)
def test_bulk_answer_is_read_per_entry_as_daprd_reads_it(
    status: int, body: bytes, expected: list[str]
) -> None:
    assert bulk_outcomes(status, body, IDS) == dict(zip(IDS, expected, strict=True))


def test_bulk_envelope_has_daprd_fields() -> None:
    spec = SubscriptionSpec(pubsub_name="ps", topic="t", default_route="/t")
    envelope = bulk_envelope(spec, [{"entryId": "a", "event": {}, "metadata": {}}])
    assert envelope["type"] == BULK_EVENT_TYPE == "com.dapr.event.sent.bulk"
    assert (envelope["topic"], envelope["pubsubname"]) == ("t", "ps")
    assert envelope["entries"][0]["entryId"] == "a" and envelope["id"]


def test_bulk_in_flight_is_read_from_subscription_metadata() -> None:
    assert bulk_in_flight({BULK_IN_FLIGHT: "50"}) == 50
    assert bulk_in_flight({}) == bulk_in_flight(None) == bulk_in_flight({BULK_IN_FLIGHT: "x"}) == 0


# ---------------------------------------------------------------------- batching


async def test_batcher_flushes_a_full_batch_and_a_lingering_one() -> None:
    batches: list[list[bytes]] = []

    async def flush(msgs: list[BrokerMessage]) -> list[BaseException | None]:
        batches.append([m.data for m in msgs])
        return [None] * len(msgs)

    batcher = BulkBatcher(max_messages=2, max_await=0.05, flush=flush)
    async with asyncio.timeout(5):
        await asyncio.gather(*(batcher.submit(BrokerMessage("t", str(i).encode())) for i in range(3)))
    assert sorted(map(len, batches)) == [1, 2]  # two filled one batch; the third went when its wait ended
    await batcher.close()


async def test_batcher_settles_each_message_with_its_own_result() -> None:
    async def flush(msgs: list[BrokerMessage]) -> list[BaseException | None]:
        return [None if m.data == b"ok" else RuntimeError("no") for m in msgs]

    batcher = BulkBatcher(max_messages=2, max_await=5, flush=flush)
    async with asyncio.timeout(5):
        ok, bad = await asyncio.gather(
            batcher.submit(BrokerMessage("t", b"ok")),
            batcher.submit(BrokerMessage("t", b"bad")),
            return_exceptions=True,
        )
    assert ok is None and isinstance(bad, RuntimeError)
    await batcher.close()


# ---------------------------------------------------------------------- the Subscriber, end to end in memory


class BulkSink:
    """An HTTP app's side, answering each entry by its event's data `answer` (missing: not mentioned)."""

    def __init__(self) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self.retried_once: set[str] = set()

    async def subscriptions(self) -> list[SubscriptionSpec]:
        return []

    async def deliver(
        self, spec: SubscriptionSpec, route: str, event: dict[str, Any], timeout: float | None
    ) -> Any:
        raise AssertionError("a bulk subscription must not deliver one by one")

    async def deliver_bulk(
        self, spec: SubscriptionSpec, route: str, entries: list[dict[str, Any]], timeout: float | None
    ) -> tuple[dict[str, str], str]:
        self.calls.append(entries)
        outcomes: dict[str, str] = {}
        for entry in entries:
            answer = entry["event"]["data"]["answer"]
            if answer == "RETRY_ONCE":
                key = entry["event"]["id"]
                answer = SUCCESS if key in self.retried_once else RETRY
                self.retried_once.add(key)
            if answer != "SILENT":
                outcomes[entry["entryId"]] = answer
        return bulk_outcomes(
            200,
            json.dumps({"statuses": [{"entryId": k, "status": v} for k, v in outcomes.items()]}).encode(),
            [e["entryId"] for e in entries],
        ), "status 200"


def cloudevent(event_id: str, answer: str) -> bytes:
    return json.dumps({"id": event_id, "specversion": "1.0", "data": {"answer": answer}}).encode()


async def start(
    dead_letter: str | None, resiliency: Resiliency | None = None, max_messages: int = 4
) -> tuple[InMemoryBroker, BulkSink, Subscriber]:
    broker = InMemoryBroker()  # concurrency 1: the bulk subscription must lift it to fill a batch
    spec = ComponentSpec("ps", "pubsub.in-memory", "v1", [], [], None, Path("ps.yaml"))
    runtime = DaprRuntime(app_id="app", resources=load_resources([]))
    runtime.pubsubs["ps"] = LoadedPubSub(spec, broker)
    sink = BulkSink()
    subscriber = Subscriber(runtime, sink, resiliency or Resiliency())  # type: ignore[arg-type]
    await subscriber.add(
        SubscriptionSpec(
            pubsub_name="ps",
            topic="t",
            default_route="/t",
            dead_letter_topic=dead_letter,
            bulk=BulkSubscribe(max_messages, 100),  # a redelivered entry waits at most 0.1 s alone
        )
    )
    return broker, sink, subscriber


async def dead_letters(broker: InMemoryBroker) -> list[str]:
    got: list[str] = []

    async def collect(msg: BrokerMessage) -> None:
        got.append(json.loads(msg.data)["id"])

    await broker.subscribe("dlq", "watcher", collect)
    return got


async def until(condition: Any) -> None:
    async with asyncio.timeout(5):
        while not condition():
            await asyncio.sleep(0.01)


async def test_one_call_per_batch_drop_and_give_up_go_to_the_dead_letter_topic() -> None:
    broker, sink, subscriber = await start(dead_letter="dlq")
    dlq = await dead_letters(broker)
    for event_id, answer in (("s", SUCCESS), ("d", DROP), ("r", RETRY), ("m", "SILENT")):
        await broker.publish("t", cloudevent(event_id, answer), {})
    await until(lambda: broker.pending("t", "app") == 0 and len(dlq) == 3)
    assert len(sink.calls) == 1 and len(sink.calls[0]) == 4  # all four in one POST
    assert sorted(dlq) == ["d", "m", "r"]  # dropped, retried and unanswered (no retry policy): dead-lettered
    assert all(e["contentType"] == "application/cloudevents+json" for e in sink.calls[0])
    (active,) = subscriber.active
    assert (active.delivered, active.dropped, active.dead_lettered) == (1, 1, 3)
    await subscriber.stop()
    await broker.close()


async def test_without_dead_letter_topic_only_the_failed_entries_are_redelivered() -> None:
    broker, sink, subscriber = await start(dead_letter=None)
    for event_id, answer in (("s1", SUCCESS), ("once", "RETRY_ONCE"), ("s2", SUCCESS), ("s3", SUCCESS)):
        await broker.publish("t", cloudevent(event_id, answer), {})
    await until(lambda: broker.pending("t", "app") == 0)
    delivered = [[e["event"]["id"] for e in call] for call in sink.calls]
    assert sorted(delivered[0]) == ["once", "s1", "s2", "s3"]
    assert delivered[1:] == [["once"]]  # the broker redelivered the one entry the app asked to retry
    await subscriber.stop()
    await broker.close()


async def test_inbound_retry_policy_resends_only_the_entries_to_retry() -> None:
    doc = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Resiliency",
        "spec": {
            "policies": {"retries": {"fast": {"policy": "constant", "duration": "10ms", "maxRetries": 2}}},
            "targets": {"components": {"ps": {"inbound": {"retry": "fast"}}}},
        },
    }
    broker, sink, subscriber = await start(
        dead_letter="dlq", resiliency=Resiliency.from_documents([doc], "app")
    )
    dlq = await dead_letters(broker)
    for event_id, answer in (("a", SUCCESS), ("b", "RETRY_ONCE"), ("c", SUCCESS), ("d", SUCCESS)):
        await broker.publish("t", cloudevent(event_id, answer), {})
    await until(lambda: broker.pending("t", "app") == 0)
    assert [[e["event"]["id"] for e in call] for call in sink.calls][1:] == [["b"]]
    assert dlq == []
    await subscriber.stop()
    await broker.close()
