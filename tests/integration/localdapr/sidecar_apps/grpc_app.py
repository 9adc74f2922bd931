"""A gRPC app for the localdapr app-channel tests, written on the SDK's `dapr.ext.grpc.App` the way the
SDK's examples write one (`@app.method`, `@app.subscribe`, `@app.binding`, `app.run(port)`).

Run as `python -m tests.integration.localdapr.sidecar_apps.grpc_app` with the environment `dapr run`
gives an app (APP_PORT), plus TOPIC_PREFIX (prepended to its topics) and HEALTH_FILE (its health check
fails while that file exists).

- `echo` answers JSON with what arrived: data, content type, metadata, the OnInvoke request's HTTP
  extension (verb, query string) and data type_url, and the app's APP_PROTOCOL. The SDK hands a
  handler only data, content type and metadata, so a server interceptor keeps the raw request for it.
- `proto` answers a protobuf message (a StringValue, so the data carries a type_url).
- `fail` raises: the SDK answers UNKNOWN "Exception calling application: ...".
- `received` answers, as JSON, every topic event and binding event the app got, in arrival order.
- Topics `<prefix>orders` and `<prefix>audits` answer what the event's data asks: `{"answer":
  "SUCCESS" | "RETRY" | "DROP", "retries": n}` (RETRY: the first n deliveries of an event id, then
  SUCCESS). `orders` has no dead-letter topic (a retried event goes back to the broker); `audits`
  dead-letters to `<prefix>audits-dead`.
- Topic `<prefix>routed`: events of type "urgent" match the rule and reach `urgent`; the others reach
  the default handler.
- Binding `cron-grpc` records its events.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from dapr.ext.grpc import (
    App,
    BindingRequest,
    InvokeMethodRequest,
    InvokeMethodResponse,
    Rule,
    SubscriptionMessage,
    TopicEventResponse,
)
from google.protobuf import wrappers_pb2

PUBSUB = "pubsub"
PREFIX = os.environ.get("TOPIC_PREFIX", "")
HEALTH_FILE = os.environ.get("HEALTH_FILE", "")

_current = threading.local()  # the OnInvoke request being handled on this thread
received: list[dict[str, Any]] = []
deliveries: Counter[str] = Counter()


class KeepInvokeRequest(grpc.ServerInterceptor):
    """Keeps each OnInvoke request where `echo` can read its HTTP extension."""

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or not handler_call_details.method.endswith("/OnInvoke"):
            return handler
        inner = handler.unary_unary

        def keep(request: Any, context: grpc.ServicerContext) -> Any:
            _current.request = request
            return inner(request, context)

        return grpc.unary_unary_rpc_method_handler(
            keep,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


app = App(thread_pool=futures.ThreadPoolExecutor(max_workers=10), interceptors=[KeepInvokeRequest()])


@app.method("echo")
def echo(request: InvokeMethodRequest) -> InvokeMethodResponse:
    raw = _current.request
    answer = {
        "data": raw.data.value.decode(errors="replace"),
        "content_type": request.content_type,
        "metadata": {k: v[0] if isinstance(v, list) else v for k, v in dict(request.metadata).items()},
        "has_http_extension": raw.HasField("http_extension"),
        "verb": raw.http_extension.Verb.Name(raw.http_extension.verb),
        "query": raw.http_extension.querystring,
        "type_url": raw.data.type_url,
        "app_protocol": os.environ.get("APP_PROTOCOL"),
    }
    response = InvokeMethodResponse(json.dumps(answer), "application/json")
    response.headers = (("x-echo", "yes"),)
    return response


@app.method("proto")
def proto(request: InvokeMethodRequest) -> wrappers_pb2.StringValue:
    return wrappers_pb2.StringValue(value=f"proto:{request.text()}")


@app.method("fail")
def fail(request: InvokeMethodRequest) -> str:
    raise ValueError("boom")


@app.method("received")
def get_received(request: InvokeMethodRequest) -> str:
    return json.dumps(received)


def _record(handler: str, event: SubscriptionMessage) -> None:
    received.append(
        {
            "kind": "topic",
            "handler": handler,
            "id": event.id(),
            "topic": event.topic(),
            "type": event.type(),
            "data": event.data(),
            "data_content_type": event.data_content_type(),
            "extensions": event.extensions(),
            "metadata": event.metadata(),
            "at": time.time(),
        }
    )


def _answer(handler: str, event: SubscriptionMessage) -> TopicEventResponse:
    deliveries[event.id()] += 1
    _record(handler, event)
    asked = event.data() if isinstance(event.data(), dict) else {}
    answer = str(asked.get("answer", "SUCCESS"))
    if answer == "RETRY" and deliveries[event.id()] > int(asked.get("retries", 0)):
        answer = "SUCCESS"
    return TopicEventResponse(answer.lower())


@app.subscribe(PUBSUB, f"{PREFIX}orders")
def orders(event: SubscriptionMessage) -> TopicEventResponse:
    return _answer("orders", event)


@app.subscribe(PUBSUB, f"{PREFIX}audits", dead_letter_topic=f"{PREFIX}audits-dead")
def audits(event: SubscriptionMessage) -> TopicEventResponse:
    return _answer("audits", event)


@app.subscribe(PUBSUB, f"{PREFIX}audits-dead")
def audits_dead(event: SubscriptionMessage) -> None:
    _record("audits-dead", event)


# The default handler of a topic with rules is registered first with topic validation off: the SDK
# then names the topic as the subscription's default route (without it the subscription has rules
# only, and daprd delivers an event that matches none of them to no one).
@app.subscribe(PUBSUB, f"{PREFIX}routed", disable_topic_validation=True)
def routed_default(event: SubscriptionMessage) -> None:
    _record("routed-default", event)


@app.subscribe(PUBSUB, f"{PREFIX}routed", rule=Rule('event.type == "urgent"', 1))
def urgent(event: SubscriptionMessage) -> None:
    _record("urgent", event)


@app.binding("cron-grpc")
def cron(request: BindingRequest) -> None:
    received.append(
        {
            "kind": "binding",
            "handler": "cron-grpc",
            "data": request.text(),
            "metadata": dict(request.binding_metadata),
        }
    )


def health() -> None:
    if HEALTH_FILE and Path(HEALTH_FILE).exists():
        raise RuntimeError("unhealthy: the test asked for it")


app.register_health_check(health)

if __name__ == "__main__":
    app.run(int(os.environ["APP_PORT"]), listen_address="127.0.0.1")
