"""Resiliency policies applied by localdapr, seen through the official SDK: an `apps` circuit breaker
that opens after its failures and half-opens after its timeout, `actors` retries of a failing method,
a `components.<binding>.outbound` retry of an output binding, and a `components.<pubsub>.inbound`
breaker holding deliveries back from a failing subscriber."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import httpx
import pytest
from dapr.actor import ActorId, ActorProxy
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprHttpError, DaprInternalError

from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port, wait_until
from tests.integration.localdapr.components import component, state_component, unique, write
from tests.integration.localdapr.sidecar_apps.actor_app import CounterActorInterface

pytestmark = pytest.mark.sidecar

REPO = Path(__file__).resolve().parents[3]
ACTOR_APP = "tests.integration.localdapr.sidecar_apps.actor_app:app"
ECHO_APP = "tests.integration.localdapr.sidecar_apps.echo_app:app"
BREAKER_TIMEOUT = 1.0
FLAKY_FAILURES = 4


def resiliency(callee: str) -> str:
    return f"""\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: policies
spec:
  policies:
    retries:
      twice:
        policy: constant
        duration: 50ms
        maxRetries: 2
      once:
        policy: constant
        duration: 50ms
        maxRetries: 1
    circuitBreakers:
      callee:
        maxRequests: 1
        timeout: {BREAKER_TIMEOUT:g}s
        trip: consecutiveFailures >= 3
      deliveries:
        timeout: {BREAKER_TIMEOUT:g}s
        trip: consecutiveFailures >= 2
  targets:
    apps:
      {callee}:
        circuitBreaker: callee
    actors:
      CounterActor:
        retry: twice
    components:
      retried:
        outbound:
          retry: twice
      pubsub:
        inbound:
          retry: once
          circuitBreaker: deliveries
"""


class Webhook(BaseHTTPRequestHandler):
    """Fails the first N requests to /fail/<N>/<key> with 500, then answers 200; counts them all."""

    calls: dict[str, int] = defaultdict(int)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        _, _, failures, key = self.path.split("/", 3)
        Webhook.calls[key] += 1
        self.send_response(500 if Webhook.calls[key] <= int(failures) else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Setup:
    host: SidecarThread  # hosts CounterActor; the SDK's client talks to it
    callee_id: str
    callee_app: AppProcess  # echo_app: its first FAIL_FIRST deliveries on "flaky" fail


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    root = tmp_path_factory.mktemp("resiliency")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Webhook)
    server_thread = threading.Thread(target=server.serve_forever, daemon=True)
    server_thread.start()
    webhook = f"http://127.0.0.1:{server.server_address[1]}"
    callee_id = unique("callee")
    res = root / "res"
    write(res, "state.yaml", state_component("in-memory", res, extra={"actorStateStore": "true"}))
    write(res, "retried.yaml", component("retried", "bindings.http", {"url": webhook}))
    write(res, "plain.yaml", component("plain", "bindings.http", {"url": webhook}))
    write(res, "pubsub.yaml", component("pubsub", "pubsub.in-memory", {}))
    write(res, "resiliency.yaml", resiliency(callee_id))
    started: list[tuple[SidecarThread, AppProcess]] = []
    try:
        for app_id, target in ((unique("host"), ACTOR_APP), (callee_id, ECHO_APP)):
            port = free_port()
            sidecar = SidecarThread(
                SidecarOptions(app_id=app_id, resources_paths=[res], app_port=port, registry_dir=root / "reg")
            )
            sidecar.start()
            env = {"FAIL_FIRST": str(FLAKY_FAILURES)}
            app = AppProcess(target, port, sidecar.options.app_env(), env, cwd=REPO, name=app_id)
            started.append((sidecar, app))
            app.start()
            sidecar.wait_app_ready()
        yield Setup(started[0][0], callee_id, started[1][1])
    finally:
        for sidecar, app in started:
            app.stop()
            sidecar.stop()
        server.shutdown()
        server.server_close()
        server_thread.join(5)


@pytest.fixture
def client(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaprClient]:
    monkeypatch.setenv("DAPR_HTTP_PORT", str(setup.host.http_port))
    monkeypatch.setenv("DAPR_GRPC_PORT", str(setup.host.grpc_port))
    with DaprClient(address=setup.host.grpc_address) as c:
        yield c


def test_breaker_opens_after_its_failures_and_half_opens_after_its_timeout(
    setup: Setup, client: DaprClient
) -> None:
    def invoke(method: str) -> int:
        try:
            return client.invoke_method(setup.callee_id, method, http_verb="GET").status_code
        except DaprHttpError as exc:
            return exc.status_code or 0

    assert invoke("echo/ok") == 200
    # Three failures trip it (consecutiveFailures >= 3); each reached the app, which answered 503.
    assert [invoke("status/503") for _ in range(3)] == [503, 503, 503]
    # Open: a call that would succeed is refused by the sidecar without reaching the app.
    with pytest.raises(DaprHttpError) as info:
        client.invoke_method(setup.callee_id, "echo/ok", http_verb="GET")
    assert info.value.status_code == 500 and "circuit breaker is open" in str(info.value)
    # After its timeout it half-opens: one probe goes through, and its success closes the breaker.
    wait_until(lambda: invoke("echo/ok") == 200, timeout=BREAKER_TIMEOUT + 10, what="breaker half-opens")
    assert invoke("status/503") == 503  # closed again: one failure is just a failure
    assert invoke("echo/ok") == 200


def test_a_failing_actor_method_is_retried_under_the_actor_policy(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAPR_HTTP_PORT", str(setup.host.http_port))

    async def call(actor_id: str, failures: int) -> int:
        proxy = ActorProxy.create("CounterActor", ActorId(actor_id), CounterActorInterface)
        return int(await proxy.Flaky(failures))

    # maxRetries 2: two failures are absorbed (the third call answers), a third reaches the caller.
    assert asyncio.run(call(unique("a"), 2)) == 3
    with pytest.raises(DaprInternalError, match="flaky call 3"):
        asyncio.run(call(unique("b"), 3))


def test_an_output_binding_is_retried_under_its_outbound_policy(client: DaprClient) -> None:
    key = unique("k")
    client.invoke_binding("retried", "post", data=b"{}", binding_metadata={"path": f"/fail/2/{key}"})
    assert Webhook.calls[key] == 3
    # The same failure on a binding with no outbound policy reaches the caller at once.
    key = unique("k")
    with pytest.raises(grpc.RpcError) as info:
        client.invoke_binding("plain", "post", data=b"{}", binding_metadata={"path": f"/fail/1/{key}"})
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert Webhook.calls[key] == 1
    # Beyond maxRetries the binding's own error is reported, after 1 + 2 attempts.
    key = unique("k")
    with pytest.raises(grpc.RpcError):
        client.invoke_binding("retried", "post", data=b"{}", binding_metadata={"path": f"/fail/9/{key}"})
    assert Webhook.calls[key] == 3


def test_a_pubsub_breaker_holds_deliveries_back_until_its_timeout(setup: Setup, client: DaprClient) -> None:
    """The subscriber fails its first 4 deliveries. Two failures (one delivery and its retry) open the
    breaker; each later probe fails and opens it again, so the 5th attempt, the first to succeed, comes
    at least 3 breaker timeouts after the 2nd (without the breaker: the broker's 50 ms redelivery)."""
    started = time.monotonic()
    client.publish_event("pubsub", "flaky", data=b'{"n": 1}', data_content_type="application/json")
    url = f"http://127.0.0.1:{setup.callee_app.port}/received/flaky"
    wait_until(lambda: httpx.get(url, timeout=5).json(), timeout=30, what="the delivery succeeds")
    assert time.monotonic() - started >= 3 * BREAKER_TIMEOUT
    assert len(httpx.get(url, timeout=5).json()) == 1
