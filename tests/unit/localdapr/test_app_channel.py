"""The app channel's translations (daprd's rules between HTTP and AppCallback gRPC), the app health
state machine, and the app protocol and health settings of the run template and the sidecar."""

from __future__ import annotations

import base64
from pathlib import Path

import grpc
import pytest
from aiohttp import web
from dapr.proto import appcallback_service_v1
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from localdapr.appchannel import GrpcAppChannel, HttpAppChannel, open_channel
from localdapr.appchannel.grpc import go_code_name, grpc_metadata, http_headers, http_status, status_body
from localdapr.apphealth import AppHealth, AppHealthConfig
from localdapr.components.spec import SubscriptionSpec
from localdapr.errors import ComponentError
from localdapr.launch.runfile import load_run_template
from localdapr.ports import free_port
from localdapr.pubsub.delivery import topic_event_request
from localdapr.sidecar import Sidecar, SidecarOptions


# ---------------------------------------------------------------------------------- invocation
def test_request_headers_become_grpc_metadata_as_daprd_sends_them() -> None:
    metadata = dict(
        grpc_metadata(
            {
                "Content-Type": "text/plain",
                "Accept": "*/*",
                "X-Custom": "v",
                "dapr-caller-app-id": "a",
                "destination-app-id": "b",
                "grpc-timeout": "1S",
                "bad key": "x",
                "x-trace-bin": base64.b64encode(b"\x00\x01").decode(),
                "x-latin": "caf\u00e9",
            }
        )
    )
    assert metadata == {
        "dapr-content-type": "text/plain",  # permanent HTTP headers get the dapr- prefix
        "dapr-accept": "*/*",
        "x-custom": "v",
        "dapr-caller-app-id": "a",
        "x-trace-bin": b"\x00\x01",  # binary metadata travels base64-encoded and is decoded
    }


def test_response_metadata_become_http_headers() -> None:
    headers = http_headers([("x-one", "1"), ("content-type", "a/b"), ("grpc-x", "2"), ("y-bin", b"\x00")])
    assert dict(headers) == {"x-one": "1", "dapr-grpc-x": "2"}


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.OK, 200),
        (grpc.StatusCode.CANCELLED, 408),
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.FAILED_PRECONDITION, 400),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.ABORTED, 409),
        (grpc.StatusCode.UNIMPLEMENTED, 501),
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 504),
        (grpc.StatusCode.UNKNOWN, 500),
    ],
)
def test_grpc_codes_map_to_daprds_http_statuses(code: grpc.StatusCode, status: int) -> None:
    assert http_status(code) == status


def test_go_code_names() -> None:
    assert go_code_name(grpc.StatusCode.CANCELLED) == "Canceled"
    assert go_code_name(grpc.StatusCode.INVALID_ARGUMENT) == "InvalidArgument"


def test_failed_app_status_body_carries_its_details() -> None:
    assert status_body(grpc.StatusCode.NOT_FOUND, "gone", []) == b'{"code":5,"message":"gone"}'
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason="R", domain="app"))
    rich = status_pb2.Status(code=9, message="m", details=[detail]).SerializeToString()
    body = status_body(grpc.StatusCode.FAILED_PRECONDITION, "m", [("grpc-status-details-bin", rich)])
    assert body == (
        b'{"code":9,"message":"m","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo",'
        b'"reason":"R","domain":"app"}]}'
    )


def test_open_channel_refuses_other_protocols() -> None:
    with pytest.raises(ValueError, match="app protocol 'https' is not supported"):
        open_channel("https", "a", "127.0.0.1", 1)


# ---------------------------------------------------------------------------------- pub/sub envelope
SPEC = SubscriptionSpec(pubsub_name="ps", topic="orders", default_route="")


def event(**fields: object) -> dict[str, object]:
    return {"id": "1", "source": "pub", "type": "t", "specversion": "1.0", "topic": "orders", **fields}


def test_topic_event_request_fields_and_extensions() -> None:
    request = topic_event_request(
        SPEC, "urgent", event(datacontenttype="application/json", data={"b": 1, "a": "<x>"}, traceid="tr")
    )
    assert (request.id, request.source, request.type, request.spec_version) == ("1", "pub", "t", "1.0")
    assert (request.topic, request.pubsub_name, request.path) == ("orders", "ps", "urgent")
    assert request.data == b'{"a":"\\u003cx\\u003e","b":1}'  # Go's encoding/json: sorted, HTML-escaped
    assert dict(request.extensions) == {"topic": "orders", "traceid": "tr"}


@pytest.mark.parametrize(
    ("fields", "data"),
    [
        ({"datacontenttype": "text/plain", "data": "hi"}, b"hi"),
        ({"datacontenttype": "application/xml", "data": "<a/>"}, b"<a/>"),
        ({"datacontenttype": "application/cloudevents+json", "data": [1]}, b"[1]"),
        ({"datacontenttype": "application/octet-stream", "data_base64": "AAE="}, b"\x00\x01"),
        ({"datacontenttype": "application/octet-stream", "data": "not sent"}, b""),
    ],
)
def test_topic_event_request_data_by_content_type(fields: dict[str, object], data: bytes) -> None:
    assert topic_event_request(SPEC, "", event(**fields)).data == data


def test_topic_event_request_refuses_data_daprd_cannot_send() -> None:
    with pytest.raises(ValueError, match="unexpected data type"):
        topic_event_request(SPEC, "", event(datacontenttype="text/plain", data={"a": 1}))
    with pytest.raises(ValueError, match="base64"):
        topic_event_request(SPEC, "", event(data_base64="%%%"))


# ---------------------------------------------------------------------------------- app health
async def test_app_health_starts_unhealthy_and_follows_the_threshold() -> None:
    changes: list[bool] = []

    async def record(healthy: bool) -> None:
        changes.append(healthy)

    async def never(timeout: float) -> bool:
        raise AssertionError("not probed in this test")

    health = AppHealth("app", AppHealthConfig(threshold=2), never, record)
    assert not health.healthy
    await health.record(False)  # already unhealthy: nothing to report
    await health.record(True)
    await health.record(False)
    assert health.healthy and changes == [True]  # one failure is below the threshold
    await health.record(False)
    await health.record(False)
    assert not health.healthy and changes == [True, False]  # reported once, when it is crossed
    await health.record(True)
    assert changes == [True, False, True]


def test_health_config_checks_and_metadata() -> None:
    config = AppHealthConfig(check_path="/ready", probe_interval=2, probe_timeout=0.25, threshold=4)
    assert config.metadata("http") == {
        "healthCheckPath": "/ready",
        "healthProbeInterval": "2s",
        "healthProbeTimeout": "250ms",
        "healthThreshold": 4,
    }
    assert "healthCheckPath" not in config.metadata("grpc")  # daprd: no path for gRPC apps
    with pytest.raises(ValueError, match="probe timeouts must be smaller than probe intervals"):
        AppHealthConfig(probe_interval=1, probe_timeout=2).validate()


async def test_http_probe_wants_2xx_on_the_health_path() -> None:
    answers = {"/healthz": 204, "/ready": 503}

    async def handle(request: web.Request) -> web.Response:
        return web.Response(status=answers[request.path])

    app = web.Application()
    app.router.add_get("/{path}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    channels = [HttpAppChannel("a", "127.0.0.1", port, health_check_path=p) for p in ("/healthz", "/ready")]
    try:
        assert [await c.probe(1.0) for c in channels] == [True, False]
    finally:
        for channel in channels:
            await channel.close()
        await runner.cleanup()
    gone = HttpAppChannel("a", "127.0.0.1", port)
    try:
        assert not await gone.probe(1.0)  # nobody listens any more
    finally:
        await gone.close()


async def test_grpc_probe_fails_without_a_health_check_service() -> None:
    server = grpc.aio.server()
    appcallback_service_v1.add_AppCallbackHealthCheckServicer_to_server(
        appcallback_service_v1.AppCallbackHealthCheckServicer(),
        server,  # answers UNIMPLEMENTED
    )
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    channel = GrpcAppChannel("a", "127.0.0.1", port)
    try:
        assert not await channel.probe(1.0)
    finally:
        await channel.close()
        await server.stop(0)


# ---------------------------------------------------------------------------------- settings
def test_run_template_app_protocol_and_health(tmp_path: Path) -> None:
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    (tmp_path / "dapr.yaml").write_text(
        "version: 1\n"
        "common:\n  appProtocol: grpc\n  enableAppHealthCheck: true\n  appHealthProbeInterval: 2\n"
        "apps:\n"
        "  - appDirPath: a\n    command: [x]\n    appHealthThreshold: 5\n    appHealthProbeTimeout: 300\n"
        "  - appDirPath: b\n    command: [x]\n    appProtocol: HTTP\n    appHealthCheckPath: /ready\n"
        "  - appDirPath: c\n    command: [x]\n    enableAppHealthCheck: false\n"
    )
    a, b, c = load_run_template(tmp_path / "dapr.yaml").apps
    assert a.app_protocol == "grpc"
    assert a.app_health == AppHealthConfig(probe_interval=2, probe_timeout=0.3, threshold=5)
    assert b.app_protocol == "http"
    assert b.app_health == AppHealthConfig(check_path="/ready", probe_interval=2)
    assert c.app_protocol == "grpc" and c.app_health is None


def test_run_template_refuses_an_unsupported_app_protocol(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "dapr.yaml").write_text(
        "version: 1\napps:\n  - appDirPath: a\n    command: [x]\n    appProtocol: h2c\n"
    )
    with pytest.raises(ComponentError, match="appProtocol 'h2c' is not supported by localdapr"):
        load_run_template(tmp_path / "dapr.yaml")


def test_sidecar_gives_the_app_its_protocol_and_refuses_bad_settings(tmp_path: Path) -> None:
    options = SidecarOptions(app_id="a", resources_paths=[tmp_path], app_port=1, app_protocol="grpc")
    assert options.app_env()["APP_PROTOCOL"] == "grpc"
    with pytest.raises(ComponentError, match="app protocol 'grpcs' is not supported"):
        Sidecar(SidecarOptions(app_id="a", resources_paths=[tmp_path], app_protocol="grpcs"))
    bad_health = AppHealthConfig(probe_interval=1, probe_timeout=5)
    with pytest.raises(
        ComponentError, match="invalid app health check settings: app health checks probe timeouts"
    ):
        Sidecar(SidecarOptions(app_id="a", resources_paths=[tmp_path], app_health=bad_health))
