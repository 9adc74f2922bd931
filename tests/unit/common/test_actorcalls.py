"""ActorCallShortcut answers the sidecar's actor callbacks exactly as DaprActor's FastAPI routes do."""

from __future__ import annotations

from typing import Any

import pytest
from dapr.actor import ActorRuntime
from dapr.clients.exceptions import DaprInternalError
from dapr.ext.fastapi import DaprActor
from fastapi import FastAPI
from fastapi.testclient import TestClient

from apps.common.actorcalls import ActorCallShortcut
from apps.common.apptoken import AppTokenGuard
from apps.common.metrics import HTTP_REQUESTS, instrument

TOKEN = "app-token-for-tests"


def platform_app(shortcut: bool) -> FastAPI:
    app = FastAPI()
    if shortcut:
        app.add_middleware(ActorCallShortcut)
    app.add_middleware(AppTokenGuard, token=TOKEN)
    instrument(app)
    DaprActor(app)
    return app


class Runtime:
    """Stands for the SDK's ActorRuntime: records the calls, answers or fails as told."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.error: Exception | None = None

    async def dispatch(
        self, actor_type: str, actor_id: str, method: str, body: bytes, reentrancy: Any
    ) -> bytes:
        self.calls.append(("dispatch", actor_type, actor_id, method, body, reentrancy))
        if self.error is not None:
            raise self.error
        return b'"{\\"ok\\": true}"'

    async def fire_reminder(self, actor_type: str, actor_id: str, name: str, body: bytes) -> None:
        self.calls.append(("reminder", actor_type, actor_id, name, body))
        if self.error is not None:
            raise self.error

    async def fire_timer(self, actor_type: str, actor_id: str, name: str, body: bytes) -> None:
        self.calls.append(("timer", actor_type, actor_id, name, body))
        if self.error is not None:
            raise self.error


@pytest.fixture
def runtime(monkeypatch: pytest.MonkeyPatch) -> Runtime:
    fake = Runtime()
    for name in ("dispatch", "fire_reminder", "fire_timer"):
        monkeypatch.setattr(ActorRuntime, name, getattr(fake, name))
    return fake


CALLS = [
    ("/actors/EquipmentActor/m-1/method/Ingest", b'"[{\\"seq\\": 1}]"', {"Dapr-Reentrancy-Id": "r-1"}),
    ("/actors/EquipmentActor/m-1/method/GetHealth", b"", {}),
    ("/actors/EquipmentActor/2024-01-01/method/remind/silence-check", b'{"data": ""}', {}),
    ("/actors/EquipmentActor/m-1/method/timer/t1", b'{"callback": "x", "data": null}', {}),
]
ERRORS = [None, DaprInternalError("state store down"), ValueError("Ingest expects a JSON list")]


@pytest.mark.parametrize("error", ERRORS, ids=["ok", "dapr-error", "other-error"])
@pytest.mark.parametrize(("path", "body", "headers"), CALLS)
def test_the_same_answer_and_the_same_runtime_call_as_daprs_routes(
    runtime: Runtime, path: str, body: bytes, headers: dict[str, str], error: Exception | None
) -> None:
    runtime.error = error
    answers = []
    for shortcut in (False, True):
        with TestClient(platform_app(shortcut)) as client:
            resp = client.put(path, content=body, headers={**headers, "dapr-api-token": TOKEN})
        answers.append((resp.status_code, resp.headers["content-type"], resp.content))
    assert answers[0] == answers[1]
    assert answers[1][0] == (200 if error is None else 500)
    assert runtime.calls[0] == runtime.calls[1]  # same arguments, the reentrancy id included


def test_without_the_app_token_nothing_reaches_the_runtime(runtime: Runtime) -> None:
    with TestClient(platform_app(True)) as client:
        resp = client.put("/actors/EquipmentActor/m-1/method/Ingest", content=b'"[]"')
    assert resp.status_code == 401
    assert runtime.calls == []


def test_other_routes_are_the_apps(runtime: Runtime) -> None:
    with TestClient(platform_app(True)) as client:
        headers = {"dapr-api-token": TOKEN}
        assert client.get("/dapr/config", headers=headers).status_code == 200
        # a deactivation, and a GET on a method path: not callbacks the shortcut serves
        assert client.delete("/actors/EquipmentActor/m-1", headers=headers).status_code == 500
        assert client.get("/actors/EquipmentActor/m-1/method/Ingest", headers=headers).status_code == 405
    assert runtime.calls == []


def test_calls_are_counted_under_dapractors_route_template(runtime: Runtime) -> None:
    template = "/actors/{actor_type_name}/{actor_id}/method/{method_name}"

    def counted() -> float:
        return HTTP_REQUESTS.labels("PUT", template, "200")._value.get()

    for shortcut in (False, True):  # FastAPI's routing counts them under DaprActor's template too
        before = counted()
        with TestClient(platform_app(shortcut)) as client:
            resp = client.put(
                "/actors/EquipmentActor/m-9/method/GetHealth", content=b"", headers={"dapr-api-token": TOKEN}
            )
        assert resp.status_code == 200
        assert counted() == before + 1
