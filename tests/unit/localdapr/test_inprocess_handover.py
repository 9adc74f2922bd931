"""In-memory hand-over between sidecars of one process (localdapr/inprocess.py): the other sidecar
runs an actor call or an invocation in its own loop under its own span and metrics, with its access
control, answers errors as its HTTP routes do, and a caller waiting on a sidecar that stops gets a
connection error (the router and the invoker then retry)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from localdapr import inprocess
from localdapr.actors.errors import ActorReply, invoke_error
from localdapr.appchannel import AppResponse, MethodCall
from localdapr.errors import DaprError
from localdapr.invocation.internal import AppUnreachable, Callee
from localdapr.telemetry import Telemetry, bind, current
from localdapr.telemetry.tracing import current_traceparent, parse_traceparent
from localdapr.trust import SidecarTrust

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


class OwnerRouter:
    """Stands for the owner's Router: records where and with what it ran each call."""

    def __init__(self, telemetry: Telemetry) -> None:
        self.telemetry = telemetry
        self.seen: list[dict[str, Any]] = []
        self.release = asyncio.Event()  # made in the owner's loop by `in_loop`
        self.hold = False

    async def invoke(
        self, actor_type: str, actor_id: str, method: str, body: bytes, headers: CIMultiDict[str]
    ) -> ActorReply:
        self.seen.append(
            {
                "thread": threading.current_thread().name,
                "telemetry": current() is self.telemetry,
                "traceparent": current_traceparent(),
                "header": headers.get("traceparent"),
                "forwarded": headers.get("X-Localdapr-Actor-Forwarded"),
                "body": body,
            }
        )
        if method == "Fail":
            raise invoke_error("error from actor service: (500) boom")
        if self.hold:
            await self.release.wait()
        return ActorReply(200, b'{"ok": ' + body + b"}")


class App:
    """Stands for the other sidecar's app channel: records the calls it got."""

    protocol = "http"

    def __init__(self) -> None:
        self.calls: list[tuple[str, MethodCall]] = []
        self.down = False

    async def invoke(self, call: MethodCall, timeout: float | None) -> AppResponse:
        if self.down:
            raise aiohttp.ClientConnectionError("connection refused")
        self.calls.append((threading.current_thread().name, call))
        return AppResponse(200, CIMultiDict({"content-type": "application/json"}), b'{"rul": 42}')


class DenySecrets:
    """Stands for the other sidecar's access control: refuses the method `secret`."""

    def denial(self, caller: str, method: str, verb: str, http_app: bool = True) -> str | None:
        return f"access control policy has denied access to {caller}" if method == "secret" else None


class OwnerThread:
    def __init__(self, tmp: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="owner-loop", daemon=True)
        self.thread.start()
        self.telemetry = Telemetry("owner")
        self.router = OwnerRouter(self.telemetry)
        self.app = App()
        self.trust = SidecarTrust(tmp, "spiffe://public/ns/default/owner")
        self.in_loop(self._make_event())
        self.host = inprocess.InProcessSidecar(
            self.loop,
            self.telemetry,
            self.trust,
            router=self.router,
            callee=Callee("owner", DenySecrets(), self.app),  # type: ignore[arg-type]
        )  # type: ignore[arg-type]
        inprocess.register("owner-1", self.host)

    async def _make_event(self) -> None:
        self.router.release = asyncio.Event()

    def in_loop(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(5)

    def stop(self) -> None:
        inprocess.unregister("owner-1")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def owner(tmp_path: Path) -> Iterator[OwnerThread]:
    running = OwnerThread(tmp_path)
    try:
        yield running
    finally:
        running.stop()


def headers() -> CIMultiDict[str]:
    return CIMultiDict({"traceparent": PARENT, "X-Localdapr-Actor-Forwarded": "1"})


async def test_a_call_runs_in_the_owners_loop_under_its_span(owner: OwnerThread) -> None:
    found = inprocess.find("owner-1")
    assert found is owner.host
    reply = await found.call_actor("Counter", "a-1", "Add", b"5", headers())
    assert (reply.status, reply.body) == (200, b'{"ok": 5}')
    seen = owner.router.seen[0]
    assert seen["thread"] == "owner-loop" and seen["telemetry"] and seen["body"] == b"5"
    assert seen["forwarded"] == "1"
    span = parse_traceparent(seen["traceparent"])
    parent = parse_traceparent(PARENT)
    assert span is not None and parent is not None
    assert span[0] == parent[0] and span[1] != parent[1], "a child span of the caller's trace"
    assert seen["header"] == seen["traceparent"], "the owner's span is handed on to the app"
    labels = {"method": "POST", "path": "/v1.0/actors/{actor_type}/{actor_id}/method/{method}"}
    assert owner.telemetry.metrics.value("dapr_http_server_response_count", **labels, status="200") == 1


async def test_an_error_is_answered_as_the_http_api_answers_it(owner: OwnerThread) -> None:
    reply = await owner.host.call_actor("Counter", "a-1", "Fail", b"", headers())
    expected = ActorReply.error(invoke_error("error from actor service: (500) boom"))
    assert (reply.status, reply.body) == (expected.status, expected.body) and reply.status == 500


async def test_a_caller_waiting_on_an_owner_that_stops_gets_a_connection_error(owner: OwnerThread) -> None:
    owner.router.hold = True
    waiting = asyncio.ensure_future(owner.host.call_actor("Counter", "a-2", "Add", b"1", headers()))
    while not owner.router.seen:
        await asyncio.sleep(0.01)
    inprocess.unregister("owner-1")
    with pytest.raises(ConnectionError):
        await waiting
    assert inprocess.find("owner-1") is None
    with pytest.raises(ConnectionError):
        await owner.host.call_actor("Counter", "a-3", "Add", b"1", headers())
    owner.loop.call_soon_threadsafe(owner.router.release.set)


async def test_only_a_sidecar_of_the_same_run_is_trusted(owner: OwnerThread, tmp_path: Path) -> None:
    same_run = SidecarTrust(tmp_path, "spiffe://public/ns/default/caller")
    other = tmp_path / "other-run"
    other.mkdir()
    other_run = SidecarTrust(other, "spiffe://public/ns/default/caller")
    assert owner.host.trusts(same_run) and not owner.host.trusts(other_run)


async def test_a_call_from_the_owners_own_loop_is_awaited_there(tmp_path: Path) -> None:
    telemetry = Telemetry("same")
    router = OwnerRouter(telemetry)
    trust = SidecarTrust(tmp_path, "spiffe://public/ns/default/same")
    host = inprocess.InProcessSidecar(asyncio.get_running_loop(), telemetry, trust, router=router)  # type: ignore[arg-type]
    callers = Telemetry("caller")
    bind(callers)
    reply = await host.call_actor("Counter", "b-1", "Add", b"2", headers())
    assert reply.body == b'{"ok": 2}' and router.seen[0]["thread"] == threading.current_thread().name
    assert router.seen[0]["telemetry"], "the owner's telemetry while it runs the call"
    assert current() is callers, "and the caller's again once it returned"


def predict_call(method: str = "v1/predict") -> MethodCall:
    return MethodCall(
        method=method,
        verb="POST",
        query="",
        headers=CIMultiDict(
            {"traceparent": PARENT, "dapr-caller-app-id": "forged", "localdapr-verb": "x", "x-mine": "1"}
        ),
        data=b'{"rows": [[1.0]]}',
        content_type="application/json",
    )


async def test_an_invocation_runs_in_the_callees_loop_with_the_proven_caller(
    owner: OwnerThread, tmp_path: Path
) -> None:
    caller = SidecarTrust(tmp_path, "spiffe://public/ns/default/equipment")
    result = await owner.host.invoke(predict_call(), caller, timeout=5)
    assert (result.status, result.body) == (200, b'{"rul": 42}')
    thread, call = owner.app.calls[0]
    assert thread == "owner-loop" and call.data == b'{"rows": [[1.0]]}' and call.verb == "POST"
    assert call.headers["dapr-caller-app-id"] == "equipment", "proven, not as the caller says"
    assert call.headers["x-mine"] == "1" and "localdapr-verb" not in call.headers
    span = parse_traceparent(call.headers["traceparent"])
    assert span is not None and span[0] == PARENT.split("-")[1] and span[1] != PARENT.split("-")[2]
    route = "/localdapr-internal/invoke/{method}"
    assert (
        owner.telemetry.metrics.value(
            "dapr_http_server_response_count", method="POST", path=route, status="200"
        )
        == 1
    )


async def test_an_invocation_the_callees_access_control_refuses_never_reaches_its_app(
    owner: OwnerThread, tmp_path: Path
) -> None:
    caller = SidecarTrust(tmp_path, "spiffe://public/ns/default/dashboard")
    with pytest.raises(DaprError) as refused:
        await owner.host.invoke(predict_call("secret"), caller, timeout=5)
    assert refused.value.http_status == 403 and refused.value.code == "ERR_DIRECT_INVOKE"
    assert owner.app.calls == []


async def test_an_app_that_does_not_answer_is_unreachable(owner: OwnerThread, tmp_path: Path) -> None:
    owner.app.down = True
    with pytest.raises(AppUnreachable):
        await owner.host.invoke(predict_call(), SidecarTrust(tmp_path, "spiffe://public/ns/default/x"), 5)
