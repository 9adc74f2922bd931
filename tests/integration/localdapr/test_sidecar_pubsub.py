"""Pub/sub through localdapr: the SDK publishes, a FastAPI app with DaprApp subscriptions receives.

Runs against pubsub.in-memory and pubsub.redis (real Redis Streams with consumer groups).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from dapr.clients import DaprClient
from redis import Redis

from localdapr.redisconn import parse_redis_host
from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port, wait_until
from tests.integration.localdapr.components import component, unique, write
from tests.integration.localdapr.crash import assert_subscriber_crash_loses_nothing

pytestmark = pytest.mark.sidecar

APP = "tests.integration.localdapr.sidecar_apps.echo_app:app"
REPO = Path(__file__).resolve().parents[3]


def pubsub_component(broker: str, redis: str | None) -> str:
    if broker == "in-memory":
        return component("pubsub", "pubsub.in-memory", {})
    assert redis
    return component(
        "pubsub",
        "pubsub.redis",
        {"redisHost": redis, "processingTimeout": "1s", "redeliverInterval": "500ms"},
    )


@dataclass
class Pair:
    """A subscriber app with its sidecar, and a publisher sidecar (another app id)."""

    subscriber: SidecarThread
    publisher: SidecarThread
    app: AppProcess
    prefix: str

    def received(self, topic: str) -> list[dict]:
        return httpx.get(f"http://127.0.0.1:{self.app.port}/received/{topic}", timeout=5).json()


@pytest.fixture(params=["in-memory", "redis"])
def broker(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def start_pair(
    tmp_path: Path,
    broker: str,
    redis: str | None,
    env: dict[str, str] | None = None,
    extra_files: dict[str, str] | None = None,
) -> Pair:
    res = tmp_path / "res"
    write(res, "pubsub.yaml", pubsub_component(broker, redis))
    sub_id, prefix = unique("sub"), unique("t") + "-"
    for name, text in (extra_files or {}).items():
        write(res, name, text.replace("SUBSCRIBER", sub_id).replace("PREFIX-", prefix))
    app_port = free_port()
    subscriber = SidecarThread(
        SidecarOptions(app_id=sub_id, resources_paths=[res], app_port=app_port, registry_dir=tmp_path / "reg")
    ).start()
    app = AppProcess(
        APP,
        app_port,
        subscriber.options.app_env(),
        {"TOPIC_PREFIX": prefix, **(env or {})},
        cwd=REPO,
        name=sub_id,
    ).start()
    subscriber.wait_app_ready()
    publisher = SidecarThread(
        SidecarOptions(app_id=unique("pub"), resources_paths=[res], registry_dir=tmp_path / "reg")
    ).start()
    return Pair(subscriber, publisher, app, prefix)


@pytest.fixture
def pair(broker: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pair]:
    redis = request.getfixturevalue("redis_url") if broker == "redis" else None
    env = dict(getattr(request, "param", {}) or {})
    p = start_pair(tmp_path, broker, redis, env)
    yield p
    p.app.stop()
    p.subscriber.stop()
    p.publisher.stop()


def publisher_client(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> DaprClient:
    monkeypatch.setenv("DAPR_HTTP_PORT", str(pair.publisher.http_port))
    return DaprClient(address=pair.publisher.grpc_address)


def test_publish_delivers_a_cloudevent(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    with publisher_client(pair, monkeypatch) as client:
        client.publish_event(
            "pubsub", pair.prefix + "orders", json.dumps({"order": 7}), data_content_type="application/json"
        )
    events = wait_until(lambda: pair.received("orders"), timeout=15, what="order delivered")
    event = events[0]
    assert event["data"] == {"order": 7}
    assert event["specversion"] == "1.0"
    assert event["type"] == "com.dapr.event.sent"
    assert event["source"] == pair.publisher.options.app_id
    assert event["topic"] == pair.prefix + "orders"
    assert event["pubsubname"] == "pubsub"
    assert event["datacontenttype"] == "application/json"
    for field in ("id", "time", "traceparent"):
        assert event[field]


def test_text_payload_without_content_type_arrives_as_string(
    pair: Pair, monkeypatch: pytest.MonkeyPatch
) -> None:
    with publisher_client(pair, monkeypatch) as client:
        client.publish_event("pubsub", pair.prefix + "orders", json.dumps({"a": 1}))
    event = wait_until(lambda: pair.received("orders"), timeout=15)[0]
    assert event["data"] == '{"a": 1}'  # contract quirk Q8: daprd defaults to text/plain


def test_raw_payload_is_wrapped_for_raw_subscription(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    with publisher_client(pair, monkeypatch) as client:
        client.publish_event(
            "pubsub", pair.prefix + "raw", b"\x00\x01binary", publish_metadata={"rawPayload": "true"}
        )
    event = wait_until(lambda: pair.received("raw"), timeout=15)[0]
    assert base64.b64decode(event["data_base64"]) == b"\x00\x01binary"
    assert event["datacontenttype"] == "application/octet-stream"


@pytest.mark.parametrize("pair", [{"FAIL_FIRST": "3"}], indirect=True)
def test_retry_and_5xx_are_redelivered_until_success(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    with publisher_client(pair, monkeypatch) as client:
        for i in range(4):
            client.publish_event(
                "pubsub", pair.prefix + "flaky", json.dumps({"n": i}), data_content_type="application/json"
            )
    events = wait_until(
        lambda: len(pair.received("flaky")) >= 4 and pair.received("flaky"),
        timeout=30,
        what="every flaky message processed",
    )
    assert sorted(e["data"]["n"] for e in events) == [0, 1, 2, 3]


def test_drop_goes_to_dead_letter_topic(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    with publisher_client(pair, monkeypatch) as client:
        client.publish_event(
            "pubsub", pair.prefix + "poison", json.dumps({"bad": True}), data_content_type="application/json"
        )
    dead = wait_until(lambda: pair.received("poison-dead"), timeout=15, what="dead letter")
    assert dead[0]["data"] == {"bad": True}
    assert len(pair.received("poison-attempts")) == 1  # DROP is not retried


def test_unknown_pubsub_is_an_error(pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    with publisher_client(pair, monkeypatch) as client, pytest.raises(Exception, match="nope is not found"):
        client.publish_event("nope", "t", "x")


DECLARATIVE = """apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: routed
spec:
  pubsubname: pubsub
  topic: PREFIX-routed
  routes:
    rules:
      - match: event.data.kind == "alpha" && event.data.level > 2
        path: /declared/alpha
    default: /declared/other
scopes:
  - SUBSCRIBER
"""


def test_declarative_subscription_with_routing_rules(
    broker: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis = request.getfixturevalue("redis_url") if broker == "redis" else None
    p = start_pair(tmp_path, broker, redis, extra_files={"sub.yaml": DECLARATIVE})
    try:
        with publisher_client(p, monkeypatch) as client:
            for data in ({"kind": "alpha", "level": 5}, {"kind": "alpha", "level": 1}, {"kind": "beta"}):
                client.publish_event(
                    "pubsub", p.prefix + "routed", json.dumps(data), data_content_type="application/json"
                )
        alpha = wait_until(lambda: p.received("declared-alpha"), timeout=15)
        other = wait_until(
            lambda: len(p.received("declared-other")) >= 2 and p.received("declared-other"), timeout=15
        )
        assert [e["data"] for e in alpha] == [{"kind": "alpha", "level": 5}]
        assert sorted(json.dumps(e["data"]) for e in other) == sorted(
            [json.dumps({"kind": "alpha", "level": 1}), json.dumps({"kind": "beta"})]
        )
        assert alpha[0]["_content_type"].startswith("application/cloudevents+json")
    finally:
        p.app.stop()
        p.subscriber.stop()
        p.publisher.stop()


def test_redis_crash_mid_stream_loses_nothing(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The subscriber's sidecar is killed mid-stream and restarted: every message is processed."""
    res = tmp_path / "res"
    write(res, "pubsub.yaml", pubsub_component("redis", redis_url))
    assert_subscriber_crash_loses_nothing(tmp_path, res, unique("sub"), unique("crash") + "-", monkeypatch)


def test_redis_max_len_approx_caps_each_topic(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`maxLenApprox` trims every topic's stream on publish (XADD MAXLEN ~ N), as daprd's broker does."""
    cap = 200
    prefix = unique("capped") + "-"
    busy, quiet = prefix + "busy", prefix + "quiet"
    res = tmp_path / "res"
    write(
        res,
        "pubsub.yaml",
        component("pubsub", "pubsub.redis", {"redisHost": redis_url, "maxLenApprox": str(cap)}),
    )
    publisher = SidecarThread(
        SidecarOptions(app_id=unique("pub"), resources_paths=[res], registry_dir=tmp_path / "reg")
    ).start()
    host, port = parse_redis_host(redis_url)
    streams = Redis(host=host, port=port)
    try:
        monkeypatch.setenv("DAPR_HTTP_PORT", str(publisher.http_port))
        with DaprClient(address=publisher.grpc_address) as client:
            for topic, count in ((busy, 3 * cap), (quiet, cap // 2)):
                for n in range(count):
                    client.publish_event(
                        "pubsub", topic, json.dumps({"n": n}), data_content_type="application/json"
                    )
        node = int(streams.config_get("stream-node-max-entries")["stream-node-max-entries"])
        # "~" lets Redis drop only whole stream nodes, so up to one node's worth above the cap stays.
        assert cap <= streams.xlen(busy) < cap + node

        def n_of(entries: list[Any]) -> int:
            (_, fields) = entries[0]
            return int(json.loads(fields[b"data"])["data"]["n"])

        assert n_of(streams.xrevrange(busy, count=1)) == 3 * cap - 1, "the newest are kept"
        assert n_of(streams.xrange(busy, count=1)) >= 3 * cap - (cap + node), "the oldest are gone"
        assert streams.xlen(quiet) == cap // 2, "a topic below the cap keeps everything: caps are per topic"
    finally:
        streams.delete(busy, quiet)
        streams.close()
        publisher.stop()
