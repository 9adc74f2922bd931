"""The gRPC app channel: an app on the SDK's `dapr.ext.grpc.App` (sidecar_apps/grpc_app.py, run as a
real process) behind a localdapr sidecar whose app protocol is grpc, used through the official SDK.

Covered: invocation from gRPC callers (no HTTP extension, verb and query, a protobuf type_url passed
through, the app's own error status) and from HTTP callers (verb, query string and content type
translated into the InvokeRequest, the app's answer and errors translated back), pub/sub (SUCCESS,
RETRY redelivered, DROP to the dead-letter topic, a routing rule and the default route), an input
binding (bindings.cron) reaching `@app.binding` and the app's BindingEventResponse honoured, app
health checks through the CLI flags, and `appProtocol: grpc` in a run template.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from dapr.clients import DaprClient
from dapr.proto import appcallback_service_v1, appcallback_v1
from google.protobuf import wrappers_pb2

from localdapr.sidecar import SidecarOptions
from localdapr.testing import (
    ModuleAppProcess,
    SidecarProcess,
    SidecarThread,
    free_port,
    launcher_token,
    wait_until,
)
from tests.integration.localdapr.components import component, unique, write

pytestmark = pytest.mark.sidecar

APP = "tests.integration.localdapr.sidecar_apps.grpc_app"
REPO = Path(__file__).resolve().parents[3]


@dataclass
class Setup:
    app_id: str
    sidecar: SidecarThread  # the gRPC app's sidecar
    caller: SidecarThread  # another app's sidecar (no app of its own): the SDK calls through it
    app: ModuleAppProcess
    prefix: str

    def invoke_url(self, method: str) -> str:
        return f"http://127.0.0.1:{self.caller.http_port}/v1.0/invoke/{self.app_id}/method/{method}"

    def received(self, handler: str | None = None) -> list[dict[str, Any]]:
        resp = httpx.get(self.invoke_url("received"), timeout=5)
        resp.raise_for_status()
        return [e for e in resp.json() if handler is None or e["handler"] == handler]

    def publish(self, topic: str, data: Any, **metadata: str) -> None:
        with DaprClient(address=self.caller.grpc_address) as client:
            client.publish_event(
                "pubsub",
                self.prefix + topic,
                json.dumps(data),
                data_content_type="application/json",
                publish_metadata=metadata,
            )


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("grpc-channel")
    res = tmp / "res"
    write(res, "pubsub.yaml", component("pubsub", "pubsub.in-memory", {}))
    write(res, "cron.yaml", component("cron-grpc", "bindings.cron", {"schedule": "@every 200ms"}))
    # Read only if the app lists it in ListInputBindings, which it does not.
    write(res, "unlisted.yaml", component("cron-unlisted", "bindings.cron", {"schedule": "@every 200ms"}))
    app_id, port, prefix = unique("grpc-app"), free_port(), unique("t") + "-"
    started: list[Any] = []
    try:
        sidecar = SidecarThread(
            SidecarOptions(
                app_id=app_id,
                resources_paths=[res],
                app_port=port,
                app_protocol="grpc",
                registry_dir=tmp / "reg",
            )
        ).start()
        started.append(sidecar)
        caller = SidecarThread(
            SidecarOptions(app_id=unique("caller"), resources_paths=[res], registry_dir=tmp / "reg")
        ).start()
        started.append(caller)
        app = ModuleAppProcess(APP, port, sidecar.options.app_env(), {"TOPIC_PREFIX": prefix}, REPO, app_id)
        started.append(app.start())
        sidecar.wait_app_ready()
        with pytest.MonkeyPatch.context() as env:
            env.setenv("DAPR_HTTP_PORT", str(caller.http_port))  # where the SDK client checks readiness
            yield Setup(app_id, sidecar, caller, app, prefix)
    finally:
        for thing in started:  # sidecars first: no delivery is attempted to an app that is gone
            thing.stop()


@pytest.fixture
def grpc_invocation(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaprClient]:
    """The SDK client invoking over gRPC (InvokeService)."""
    monkeypatch.setenv("DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")
    with DaprClient(address=setup.caller.grpc_address) as client:
        yield client


@pytest.fixture
def http_invocation(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaprClient]:
    """The SDK client invoking over HTTP (`/v1.0/invoke/...`, its default)."""
    monkeypatch.setenv("DAPR_API_METHOD_INVOCATION_PROTOCOL", "http")
    monkeypatch.setenv("DAPR_GRPC_PORT", str(setup.caller.grpc_port))
    with DaprClient() as client:
        yield client


# ---------------------------------------------------------------------------------- invocation
def test_grpc_caller_reaches_on_invoke_as_sent(setup: Setup, grpc_invocation: DaprClient) -> None:
    resp = grpc_invocation.invoke_method(
        setup.app_id, "echo", data=b'{"n": 1}', content_type="application/json"
    )
    body = resp.json()
    assert body["data"] == '{"n": 1}' and body["content_type"] == "application/json"
    assert body["has_http_extension"] is False  # the SDK sends none without http_verb; daprd needs none
    assert body["metadata"]["dapr-caller-app-id"] == setup.caller.options.app_id
    assert body["metadata"]["dapr-callee-app-id"] == setup.app_id
    assert body["app_protocol"] == "grpc"
    assert resp.content_type == "application/json"
    assert resp.headers["x-echo"] == ["yes"]  # the app's response metadata

    resp = grpc_invocation.invoke_method(
        setup.app_id, "echo", data=b"x", http_verb="PUT", http_querystring=(("a", "1"), ("b", "two words"))
    )
    assert (resp.json()["verb"], resp.json()["query"]) == ("PUT", "a=1&b=two+words")


def test_grpc_caller_protobuf_data_keeps_its_type(setup: Setup, grpc_invocation: DaprClient) -> None:
    sent = grpc_invocation.invoke_method(setup.app_id, "echo", data=wrappers_pb2.StringValue(value="v"))
    assert sent.json()["type_url"] == "type.googleapis.com/google.protobuf.StringValue"
    answer = wrappers_pb2.StringValue()
    grpc_invocation.invoke_method(setup.app_id, "proto", data=b"hi").unpack(answer)
    assert answer.value == "proto:hi"


def test_grpc_caller_gets_the_apps_own_error_status(setup: Setup, grpc_invocation: DaprClient) -> None:
    with pytest.raises(grpc.RpcError) as failed:  # the SDK lets InvokeService's error through as is
        grpc_invocation.invoke_method(setup.app_id, "fail", data=b"")
    assert failed.value.code() == grpc.StatusCode.UNKNOWN
    assert failed.value.details() == "Exception calling application: boom"


def test_http_caller_is_translated_into_on_invoke(setup: Setup, http_invocation: DaprClient) -> None:
    resp = http_invocation.invoke_method(
        setup.app_id,
        "echo",
        data="hello",
        content_type="text/plain",
        http_verb="PATCH",
        http_querystring=(("a", "1"), ("b", "2")),
    )
    body = resp.json()
    assert (body["verb"], body["query"], body["content_type"], body["data"]) == (
        "PATCH",
        "a=1&b=2",
        "text/plain",
        "hello",
    )
    # Permanent HTTP headers reach a gRPC app with a dapr- prefix, as daprd sends them.
    assert body["metadata"]["dapr-content-type"] == "text/plain"
    assert body["metadata"]["dapr-caller-app-id"] == setup.caller.options.app_id
    headers = {k.lower(): v for k, v in resp.headers.items()}
    assert headers["content-type"] == ["application/json"] and headers["x-echo"] == ["yes"]


def test_http_caller_gets_protobuf_answers_and_errors_as_daprd_writes_them(setup: Setup) -> None:
    proto = httpx.post(setup.invoke_url("proto"), content=b"hi", timeout=10)
    assert proto.status_code == 200 and proto.headers["content-type"] == "application/x-protobuf"
    assert wrappers_pb2.StringValue.FromString(proto.content).value == "proto:hi"

    failed = httpx.post(setup.invoke_url("fail"), timeout=10)
    assert failed.status_code == 500  # UNKNOWN
    assert failed.json() == {"code": 2, "message": "Exception calling application: boom"}
    missing = httpx.get(setup.invoke_url("no-such-method"), timeout=10)
    assert missing.status_code == 501 and missing.json()["code"] == 12  # UNIMPLEMENTED


# ---------------------------------------------------------------------------------- pub/sub
def test_success_and_retry_answers(setup: Setup) -> None:
    setup.publish("orders", {"answer": "SUCCESS", "name": "ok"})
    setup.publish("orders", {"answer": "RETRY", "retries": 2, "name": "again"})
    wait_until(
        lambda: len([e for e in setup.received("orders") if e["data"]["name"] == "again"]) == 3,
        15,
        what="the RETRY event delivered 3 times (2 RETRY answers, then SUCCESS)",
    )
    events = setup.received("orders")
    assert [e["data"]["name"] for e in events].count("ok") == 1
    event = events[0]
    assert event["topic"] == setup.prefix + "orders" and event["data_content_type"] == "application/json"
    assert event["type"] == "com.dapr.event.sent"
    # CloudEvent attributes without their own field travel as extensions; the pubsub name as metadata.
    assert event["extensions"]["pubsubname"] == "pubsub"
    assert event["extensions"]["topic"] == setup.prefix + "orders"
    assert event["metadata"]["pubsubname"] == "pubsub"
    # The header is the delivery's span (a child of the event's), as daprd sends it: same trace id.
    handed, published = event["metadata"]["traceparent"], event["extensions"]["traceparent"]
    assert handed.split("-")[1] == published.split("-")[1] and handed != published


def test_drop_answer_goes_to_the_dead_letter_topic(setup: Setup) -> None:
    setup.publish("audits", {"answer": "DROP", "name": "dropped"})
    dead = wait_until(lambda: setup.received("audits-dead"), 15, what="the dropped event dead-lettered")
    assert dead[0]["data"] == {"answer": "DROP", "name": "dropped"}
    assert len(setup.received("audits")) == 1  # dropped, not retried


def test_routing_rule_and_default_route(setup: Setup) -> None:
    setup.publish("routed", {"n": 1}, **{"cloudevent.type": "urgent"})
    setup.publish("routed", {"n": 2})
    wait_until(
        lambda: setup.received("urgent") and setup.received("routed-default"), 15, what="both routes used"
    )
    assert [e["data"] for e in setup.received("urgent")] == [{"n": 1}]
    assert [e["data"] for e in setup.received("routed-default")] == [{"n": 2}]


# ---------------------------------------------------------------------------------- input bindings
def test_cron_binding_reaches_app_binding(setup: Setup) -> None:
    events = wait_until(lambda: len(setup.received("cron-grpc")) >= 2, 15, what="two cron events")
    assert events
    event = setup.received("cron-grpc")[0]
    assert event["data"] == ""
    assert event["metadata"]["timeZone"] and event["metadata"]["readTimeUTC"]
    # ListInputBindings named cron-grpc only: the other input binding is not read.
    assert setup.sidecar.sidecar is not None and setup.sidecar.sidecar.input_bindings is not None
    assert set(setup.sidecar.sidecar.input_bindings.readers) == {"cron-grpc"}


class AnsweringApp(appcallback_service_v1.AppCallbackServicer):
    """A bare AppCallback server whose BindingEventResponse sends data to an output binding: the SDK's
    `@app.binding` always answers an empty response, so the SDK cannot ask for that."""

    def ListInputBindings(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return appcallback_v1.ListInputBindingsResponse(bindings=["tick"])

    def ListTopicSubscriptions(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return appcallback_v1.ListTopicSubscriptionsResponse()

    def OnBindingEvent(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
        return appcallback_v1.BindingEventResponse(to=["files"], data=b'{"to": "files", "n": 1}')


def test_binding_event_response_sends_its_data_to_the_to_bindings(tmp_path: Path) -> None:
    res, root = tmp_path / "res", tmp_path / "files"
    write(res, "tick.yaml", component("tick", "bindings.cron", {"schedule": "@every 200ms"}))
    write(res, "files.yaml", component("files", "bindings.localstorage", {"rootPath": str(root)}))
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    appcallback_service_v1.add_AppCallbackServicer_to_server(AnsweringApp(), server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    sidecar = None
    try:
        sidecar = SidecarThread(
            SidecarOptions(
                app_id=unique("answering"),
                resources_paths=[res],
                app_port=port,
                app_protocol="grpc",
                registry_dir=tmp_path / "reg",
            )
        ).start()
        sidecar.wait_app_ready()
        written = wait_until(lambda: list(root.glob("*")), 15, what="a file written by the output binding")
        # The data as daprd re-encodes it with encoding/json: compact, keys sorted.
        assert written[0].read_text() == '{"n":1,"to":"files"}'
    finally:
        if sidecar is not None:
            sidecar.stop()
        server.stop(0)


# ---------------------------------------------------------------------------------- health checks
def test_failing_health_checks_stop_delivery_and_invocation(tmp_path: Path) -> None:
    res, unhealthy = tmp_path / "res", tmp_path / "unhealthy"
    write(res, "pubsub.yaml", component("pubsub", "pubsub.in-memory", {}))
    port, prefix = free_port(), unique("h") + "-"
    sidecar = SidecarProcess(
        unique("health"),
        [res],
        app_port=port,
        registry=tmp_path / "reg",
        app_protocol="grpc",
        args=[
            "--enable-app-health-check",
            "--app-health-probe-interval",
            "1",
            "--app-health-probe-timeout",
            "500",
            "--app-health-threshold",
            "2",
        ],
    )
    app = ModuleAppProcess(
        APP, port, sidecar.app_env(), {"TOPIC_PREFIX": prefix, "HEALTH_FILE": str(unhealthy)}, REPO, "health"
    )
    api = f"http://127.0.0.1:{sidecar.http_port}/v1.0"

    def echo() -> httpx.Response:
        return httpx.post(f"{api}/invoke/{sidecar.app_id}/method/echo", content=b"{}", timeout=5)

    try:
        sidecar.start()
        app.start()
        wait_until(lambda: sidecar.healthy("/v1.0/healthz"), 20, what="the app's first healthy probe")
        properties = httpx.get(f"{api}/metadata", timeout=5).json()["appConnectionProperties"]
        assert properties == {
            "port": port,
            "protocol": "grpc",
            "channelAddress": "127.0.0.1",
            "health": {"healthProbeInterval": "1s", "healthProbeTimeout": "500ms", "healthThreshold": 2},
        }
        assert echo().status_code == 200

        def refused() -> httpx.Response | None:
            resp = echo()
            return resp if resp.status_code == 500 else None

        unhealthy.touch()
        assert wait_until(refused, 20, what="invocation refused").json() == {
            "errorCode": "ERR_DIRECT_INVOKE",
            "message": f"failed to invoke, id: {sidecar.app_id}, err: rpc error: code = Internal "
            "desc = error invoking app channel: rpc error: code = Internal "
            "desc = app is not in a healthy state",
        }
        wait_until(lambda: "app entered un-healthy status" in sidecar.log(), 10, what="the sidecar's log")
        assert httpx.get(f"{api}/metadata", timeout=5).json()["subscriptions"] == []  # delivery stopped
        published = httpx.post(f"{api}/publish/pubsub/{prefix}orders", json={"name": "while-down"}, timeout=5)
        assert published.status_code == 204

        recovered_at = time.time()
        unhealthy.unlink()
        wait_until(lambda: echo().status_code == 200, 20, what="invocation accepted again")
        assert "app entered healthy status" in sidecar.log()

        def received() -> list[dict[str, Any]]:
            events = httpx.post(f"{api}/invoke/{sidecar.app_id}/method/received", timeout=5).json()
            return [e for e in events if e["handler"] == "orders"]

        event = wait_until(received, 15, what="the event published while unhealthy")[0]
        assert event["data"] == {"name": "while-down"} and event["at"] >= recovered_at
    finally:
        app.stop()
        sidecar.stop()


# ---------------------------------------------------------------------------------- run template
def test_run_template_app_protocol_grpc(tmp_path: Path) -> None:
    write(tmp_path / "res", "pubsub.yaml", component("pubsub", "pubsub.in-memory", {}))
    http_port = free_port()
    template = {
        "version": 1,
        "apps": [
            {
                "appID": "grpc-template",
                "appDirPath": str(REPO),
                "appPort": free_port(),
                "appProtocol": "grpc",
                "daprHTTPPort": http_port,
                "daprGRPCPort": free_port(),
                "resourcesPaths": [str(tmp_path / "res")],
                "command": ["python", "-m", APP],
            }
        ],
    }
    (tmp_path / "dapr.yaml").write_text(yaml.safe_dump(template))
    proc = subprocess.Popen(
        [sys.executable, "-m", "localdapr", "up", "-f", str(tmp_path / "dapr.yaml")],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{http_port}/v1.0/invoke/grpc-template/method/echo"

        def answer() -> dict[str, Any] | None:
            try:  # with the token the launcher gave the app's sidecar
                resp = httpx.post(
                    url, content=b"{}", timeout=2, headers=launcher_token(tmp_path, "grpc-template")
                )
            except httpx.HTTPError:
                return None
            return resp.json() if resp.status_code == 200 else None

        body = wait_until(answer, 60, interval=0.2, what="the template's gRPC app answering")
        assert body["app_protocol"] == "grpc" and body["has_http_extension"] is True
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
