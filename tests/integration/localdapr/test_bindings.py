"""Bindings through localdapr: the official SDK invokes output bindings, a real app receives input events.

One sidecar (with a FastAPI app) hosts every binding of this module: cron input bindings with and
without `direction` and `route`, one whose app route fails (with and without an inbound retry
policy), localstorage and http output bindings, and bindings whose direction rules them out. A plain
HTTP server on loopback stands in for the http binding's remote endpoint.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from dapr.clients import DaprClient

from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port, wait_until
from tests.integration.localdapr.components import component, write

pytestmark = pytest.mark.sidecar

APP = "tests.integration.localdapr.sidecar_apps.bindings_app:app"
REPO = Path(__file__).resolve().parents[3]
READ_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d{1,9})? \+0000 UTC")

RESILIENCY = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: bindings
spec:
  policies:
    retries:
      quick:
        policy: constant
        duration: 50ms
        maxRetries: 3
  targets:
    components:
      retried:
        inbound:
          retry: quick
"""


class RemoteHandler(BaseHTTPRequestHandler):
    """The http binding's endpoint: echoes the request; /base/status/<code> answers that status."""

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        path = self.path
        if path.startswith("/base/status/"):
            status = int(path.rsplit("/", 1)[1].split("?")[0])
            payload = json.dumps({"status": status}).encode()
        else:
            status = 200
            payload = json.dumps(
                {
                    "method": self.command,
                    "path": path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body.decode(errors="replace"),
                }
            ).encode()
        gzipped = path.endswith("?gzip=1") and "gzip" in (self.headers.get("Accept-Encoding") or "")
        if gzipped:
            payload = gzip.compress(payload)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("x-reply", "yes")
        self.send_header("X-Multi", "a")
        self.send_header("X-Multi", "b")
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_TRACE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output clean


@dataclass
class Setup:
    sidecar: SidecarThread
    app: AppProcess
    files: Path
    outside: Path

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.sidecar.http_port}/v1.0"

    def calls(self, path: str | None = None) -> list[dict[str, Any]]:
        params = {"path": path} if path else {}
        return httpx.get(f"http://127.0.0.1:{self.app.port}/calls", params=params, timeout=5).json()

    def posts(self, path: str) -> list[dict[str, Any]]:
        return [c for c in self.calls(path) if c["method"] == "POST"]


def cron(name: str, schedule: str, **extra: str) -> str:
    return component(name, "bindings.cron", {"schedule": schedule, **extra})


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("bindings")
    res, files, outside = root / "res", root / "files", root / "outside"
    outside.mkdir()
    server = ThreadingHTTPServer(("127.0.0.1", 0), RemoteHandler)
    server_thread = threading.Thread(target=server.serve_forever, daemon=True)
    server_thread.start()
    remote = f"http://127.0.0.1:{server.server_address[1]}/base"
    docs = {
        "tick.yaml": cron("tick", "@every 1s"),
        "every-second.yaml": cron("every-second", "* * * * * *", direction="input"),
        "explicit.yaml": cron("explicit", "@every 1s", direction="input"),
        "routed.yaml": cron("routed", "@every 1s", route="/custom/route"),
        "unsubscribed.yaml": cron("unsubscribed", "@every 1s"),
        "outward.yaml": cron("outward", "@every 1s", direction="output"),
        "retried.yaml": cron("retried", "@every 1s", route="/flaky/retried"),
        "dropped.yaml": cron("dropped", "@every 1s", route="/flaky/dropped"),
        "files.yaml": component("files", "bindings.localstorage", {"rootPath": str(files)}),
        "inbox.yaml": component(
            "inbox", "bindings.localstorage", {"rootPath": str(root / "inbox"), "direction": "input"}
        ),
        "web.yaml": component("web", "bindings.http", {"url": remote}),
        "lenient.yaml": component("lenient", "bindings.http", {"url": remote, "errorIfNot2XX": "false"}),
        "resiliency.yaml": RESILIENCY,
    }
    for name, text in docs.items():
        write(res, name, text)
    app_port = free_port()
    sidecar = SidecarThread(
        SidecarOptions(
            app_id="bindings-app", resources_paths=[res], app_port=app_port, registry_dir=root / "reg"
        )
    )
    app: AppProcess | None = None
    try:
        sidecar.start()
        app = AppProcess(APP, app_port, sidecar.options.app_env(), {"FAIL_FIRST": "2"}, cwd=REPO)
        app.start()
        sidecar.wait_app_ready()
        yield Setup(sidecar, app, files, outside)
    finally:
        if app is not None:
            app.stop()
        sidecar.stop()
        server.shutdown()
        server.server_close()
        server_thread.join(5)


@pytest.fixture
def client(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaprClient]:
    monkeypatch.setenv("DAPR_HTTP_PORT", str(setup.sidecar.http_port))
    with DaprClient(address=setup.sidecar.grpc_address) as c:
        yield c


def read_time(call: dict[str, Any]) -> datetime:
    text = call["headers"]["readtimeutc"]
    assert READ_TIME.fullmatch(text), text
    stamp, _, _ = text.partition(" +0000")
    if "." in stamp:
        head, frac = stamp.split(".")
        stamp = f"{head}.{frac[:6].ljust(6, '0')}"
    return datetime.fromisoformat(stamp)


# ---------------------------------------------------------------------------------- input: cron
def test_cron_fires_on_schedule_after_asking_the_app(setup: Setup) -> None:
    posts = wait_until(lambda: len(setup.posts("/tick")) >= 3 and setup.posts("/tick"), 20, what="3 ticks")
    calls = setup.calls("/tick")
    assert calls[0]["method"] == "OPTIONS"  # asked first (the route is POST-only: 405 = subscribed)
    assert [c["method"] for c in calls[1:]] == ["POST"] * (len(calls) - 1)
    for post in posts:
        assert post["body"] == ""
        assert post["headers"]["content-type"] == "application/json"
        assert post["headers"]["timezone"] == "Local"
    times = [read_time(p) for p in posts]
    gaps = [(b - a).total_seconds() for a, b in zip(times, times[1:], strict=False)]
    assert all(0.9 <= gap < 5 for gap in gaps), gaps


def test_cron_six_field_schedule(setup: Setup) -> None:
    posts = wait_until(lambda: len(setup.posts("/every-second")) >= 2 and setup.posts("/every-second"), 20)
    times = [read_time(p) for p in posts]
    assert times == sorted(times) and times[0] < times[1]


def test_route_metadata_replaces_the_component_name(setup: Setup) -> None:
    wait_until(lambda: setup.posts("/custom/route"), 20, what="a delivery on /custom/route")
    assert setup.calls("/custom/route")[0]["method"] == "OPTIONS"
    assert setup.calls("/routed") == []


def test_direction_is_respected(setup: Setup, client: DaprClient) -> None:
    wait_until(lambda: len(setup.posts("/tick")) >= 3, 20, what="3 ticks")
    wait_until(lambda: setup.posts("/explicit"), 20, what="a delivery on /explicit")
    # direction "input": read without asking the app
    assert all(c["method"] == "POST" for c in setup.calls("/explicit"))
    assert all(c["method"] == "POST" for c in setup.calls("/every-second"))
    # no direction and no route in the app: asked once (404), never read
    assert [c["method"] for c in setup.calls("/unsubscribed")] == ["OPTIONS"]
    # direction "output" on an input-only type: nothing at all
    assert setup.calls("/outward") == []
    # direction "input" on an output-only type: no output binding
    with pytest.raises(grpc.RpcError) as info:
        client.invoke_binding("inbox", "list")
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == "error invoking output binding inbox: couldn't find output binding inbox"
    capabilities = {c.name: list(c.capabilities) for c in client.get_metadata().registered_components}
    assert capabilities["tick"] == ["INPUT_BINDING"]
    assert capabilities["files"] == ["OUTPUT_BINDING"]
    assert capabilities["outward"] == [] and capabilities["inbox"] == []


def test_failed_delivery_is_retried_under_the_inbound_policy_else_dropped(setup: Setup) -> None:
    retried = wait_until(
        lambda: len(setup.posts("/flaky/retried")) >= 3 and setup.posts("/flaky/retried"), 20
    )
    dropped = wait_until(
        lambda: len(setup.posts("/flaky/dropped")) >= 3 and setup.posts("/flaky/dropped"), 20
    )
    # with components.retried.inbound.retry: the same fire (same readTimeUTC) until the app takes it
    assert len({p["headers"]["readtimeutc"] for p in retried[:3]}) == 1
    # without a policy: a refused fire is dropped, the next one is a new event
    assert len({p["headers"]["readtimeutc"] for p in dropped[:3]}) == 3


# ---------------------------------------------------------------------------------- output: localstorage
def test_localstorage_round_trip_list_and_delete(setup: Setup, client: DaprClient) -> None:
    created = client.invoke_binding(
        "files", "create", data=b'{"x": 1}', binding_metadata={"fileName": "r/a.json"}
    )
    assert json.loads(created.data) == {"fileName": "r/a.json"}
    got = client.invoke_binding("files", "get", binding_metadata={"fileName": "r/a.json"})
    assert got.data == b'{"x": 1}'
    # binary content travels as base64 and is stored decoded
    blob = bytes(range(256))
    client.invoke_binding(
        "files", "create", data=base64.b64encode(blob), binding_metadata={"fileName": "r/blob.bin"}
    )
    assert (setup.files / "r" / "blob.bin").read_bytes() == blob
    # no fileName: a UUID
    generated = json.loads(client.invoke_binding("files", "create", data=b"anonymous file").data)["fileName"]
    assert (setup.files / generated).read_bytes() == b"anonymous file"
    listed = json.loads(client.invoke_binding("files", "list", binding_metadata={"fileName": "r"}).data)
    assert listed == [str(setup.files / "r" / "a.json"), str(setup.files / "r" / "blob.bin")]
    deleted = client.invoke_binding("files", "delete", binding_metadata={"fileName": "r/a.json"})
    assert deleted.data == b""
    assert not (setup.files / "r" / "a.json").exists()
    with pytest.raises(grpc.RpcError) as info:
        client.invoke_binding("files", "get", binding_metadata={"fileName": "r/a.json"})
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert f"file not found: {setup.files / 'r' / 'a.json'}" in info.value.details()
    with pytest.raises(grpc.RpcError) as info:
        client.invoke_binding("files", "rename")
    assert info.value.details() == (
        "error invoking output binding files: binding files does not support operation rename. "
        "supported operations:create get list delete"
    )


@pytest.mark.parametrize("name", ["../escape.txt", "a/../../escape.txt", "link/escape.txt"])
def test_localstorage_refuses_path_traversal(setup: Setup, client: DaprClient, name: str) -> None:
    link = setup.files / "link"
    if not link.is_symlink():
        link.symlink_to(setup.outside, target_is_directory=True)
    with pytest.raises(grpc.RpcError) as info:
        client.invoke_binding("files", "create", data=b"x", binding_metadata={"fileName": name})
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "out of rootPath" in info.value.details() or "escapes rootPath" in info.value.details()
    assert list(setup.outside.iterdir()) == []
    assert not (setup.files.parent / "escape.txt").exists()


def test_localstorage_leading_slash_stays_inside(setup: Setup, client: DaprClient) -> None:
    created = client.invoke_binding("files", "create", data=b"in", binding_metadata={"fileName": "/top.txt"})
    assert json.loads(created.data) == {"fileName": "top.txt"}
    assert (setup.files / "top.txt").read_bytes() == b"in"


def test_localstorage_over_the_http_api(setup: Setup) -> None:
    url = f"{setup.api}/bindings/files"
    # a JSON string arrives quoted and is un-quoted; an object is stored as Go re-encodes it
    resp = httpx.post(
        url, json={"operation": "create", "data": "Hello\nWorld", "metadata": {"fileName": "h.txt"}}
    )
    assert resp.status_code == 200 and resp.json() == {"fileName": "h.txt"}
    assert (setup.files / "h.txt").read_bytes() == b"Hello\nWorld"
    resp = httpx.post(
        url, json={"operation": "create", "data": {"b": 1, "a": "<&>"}, "metadata": {"fileName": "o.json"}}
    )
    assert (setup.files / "o.json").read_bytes() == b'{"a":"\\u003c\\u0026\\u003e","b":1}'
    resp = httpx.put(url, json={"operation": "get", "metadata": {"fileName": "h.txt"}})
    assert resp.status_code == 200 and resp.content == b"Hello\nWorld"
    assert resp.headers["content-type"] == "application/json"
    resp = httpx.post(url, json={"operation": "delete", "metadata": {"fileName": "h.txt"}})
    assert resp.status_code == 204 and resp.content == b""
    (setup.files / "empty").mkdir(exist_ok=True)
    resp = httpx.post(url, json={"operation": "list", "metadata": {"fileName": "empty"}})
    assert resp.status_code == 200 and resp.content == b"null"
    resp = httpx.post(url, json={"operation": "create", "data": "x", "metadata": {"fileName": "../out.txt"}})
    assert resp.status_code == 500
    assert resp.json()["errorCode"] == "ERR_INVOKE_OUTPUT_BINDING"


# ---------------------------------------------------------------------------------- output: http
def test_http_binding_calls_the_endpoint(client: DaprClient) -> None:
    resp = client.invoke_binding(
        "web",
        "post",
        data=b'{"a": 1}',
        binding_metadata={"path": "/echo/x?q=1", "X-Custom": "v", "lower": "not a header"},
    )
    echo = json.loads(resp.data)
    assert echo["method"] == "POST" and echo["path"] == "/base/echo/x?q=1"
    assert echo["body"] == '{"a": 1}'
    assert echo["headers"]["content-type"] == "application/json; charset=utf-8"
    assert echo["headers"]["accept"] == "application/json; charset=utf-8"
    assert echo["headers"]["x-custom"] == "v" and "lower" not in echo["headers"]
    meta = resp.binding_metadata
    assert meta["statusCode"] == "200" and meta["status"] == "200 OK"
    assert meta["X-Reply"] == "yes" and meta["X-Multi"] == "a, b"
    assert meta["Content-Type"] == "application/json"
    # "create" is POST; get sends no body
    assert json.loads(client.invoke_binding("web", "create", data=b"c").data)["method"] == "POST"
    got = json.loads(client.invoke_binding("web", "get", data=b"ignored").data)
    assert got["method"] == "GET" and got["body"] == "" and "content-type" not in got["headers"]
    # asked for gzip like Go's client, returned decompressed without the encoding headers
    zipped = client.invoke_binding("web", "get", binding_metadata={"path": "z?gzip=1"})
    assert json.loads(zipped.data)["headers"]["accept-encoding"] == "gzip"
    assert "Content-Encoding" not in zipped.binding_metadata
    assert "Content-Length" not in zipped.binding_metadata


def test_http_binding_errors(client: DaprClient) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.invoke_binding("web", "get", binding_metadata={"path": "status/404"})
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == "error invoking output binding web: received status code 404"
    lenient = client.invoke_binding("lenient", "get", binding_metadata={"path": "status/503"})
    assert lenient.binding_metadata["statusCode"] == "503"
    assert json.loads(lenient.data) == {"status": 503}
    # the request's errorIfNot2XX overrides the component's
    relaxed = client.invoke_binding(
        "web", "get", binding_metadata={"path": "status/418", "errorIfNot2XX": "false"}
    )
    assert relaxed.binding_metadata["status"] == "418 I'm a Teapot"
    with pytest.raises(grpc.RpcError) as info:
        client.invoke_binding("web", "list")
    assert "binding web does not support operation list. supported operations:create get head" in (
        info.value.details()
    )


def test_http_api_returns_data_metadata_and_errors_as_daprd(setup: Setup) -> None:
    resp = httpx.post(
        f"{setup.api}/bindings/web",
        json={"operation": "post", "data": {"b": [1, 2.5], "a": "x"}, "metadata": {"path": "echo"}},
    )
    assert resp.status_code == 200
    assert resp.json()["body"] == '{"a":"x","b":[1,2.5]}'  # Go's encoding/json: keys sorted
    assert resp.headers["metadata.statusCode"] == "200"
    assert resp.headers["metadata.X-Reply"] == "yes"
    # the binding's error still carries its metadata
    resp = httpx.post(
        f"{setup.api}/bindings/web", json={"operation": "get", "metadata": {"path": "status/404"}}
    )
    assert resp.status_code == 500
    assert resp.json() == {
        "errorCode": "ERR_INVOKE_OUTPUT_BINDING",
        "message": "error invoking output binding web: received status code 404",
    }
    assert resp.headers["metadata.statusCode"] == "404"
    resp = httpx.post(f"{setup.api}/bindings/nope", json={"operation": "get"})
    assert resp.status_code == 500
    assert resp.json()["message"] == "error invoking output binding nope: couldn't find output binding nope"
    resp = httpx.post(f"{setup.api}/bindings/web", json={"data": 1})
    assert resp.status_code == 500
    assert (
        resp.json()["message"] == "error invoking output binding web: operation field is missing from request"
    )
    resp = httpx.post(f"{setup.api}/bindings/web", content=b"{not json")
    assert resp.status_code == 400 and resp.json()["errorCode"] == "ERR_MALFORMED_REQUEST"


def test_unknown_binding_over_grpc(client: DaprClient) -> None:
    with pytest.raises(grpc.RpcError) as info:
        client.invoke_binding("nope", "create", data=b"x")
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert info.value.details() == "error invoking output binding nope: couldn't find output binding nope"


def test_metadata_lists_bindings(setup: Setup) -> None:
    components = {c["name"]: c for c in httpx.get(f"{setup.api}/metadata").json()["components"]}
    assert components["tick"] == {
        "name": "tick",
        "type": "bindings.cron",
        "version": "v1",
        "capabilities": ["INPUT_BINDING"],
    }
    assert components["web"]["type"] == "bindings.http"
    assert components["web"]["capabilities"] == ["OUTPUT_BINDING"]
