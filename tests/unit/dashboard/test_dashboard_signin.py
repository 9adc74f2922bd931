"""The dashboard's sign-in (signin.py) on a bare FastAPI app with the dashboard's kinds of routes: without
a session a page redirects to /login and the API answers 401 naming the scope; a gateway API key opens
a signed session (cookie); changes need `operate`; a forged, tampered or expired session is none; the
live websocket is closed without one; the operator recorded is the key's name."""

from __future__ import annotations

import base64

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from apps.dashboard.signin import SESSION_COOKIE, Session, SessionSigner, SignInGuard, session_of

KEYS = {
    "vgl_reader": Session(key_id="k1", name="viewer@plant", scopes=["read"], expires=0),
    "vgl_operator": Session(key_id="k2", name="ops@plant", scopes=["read", "operate"], expires=0),
    "vgl_ingest": Session(key_id="k3", name="line-3", scopes=["ingest"], expires=0),
}


class Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(clock: Clock) -> TestClient:
    signer = SessionSigner(b"s" * 32, 3600, clock)
    checked: list[str] = []

    async def verify(key: str) -> Session | None:
        checked.append(key)
        return KEYS.get(key)

    app = FastAPI()
    app.add_middleware(SignInGuard, signer=signer, verify=verify)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/session")
    async def sign_in(body: dict[str, str]) -> dict[str, str]:
        session = await verify(body["key"])
        assert session is not None
        token, _ = signer.issue(session.key_id, session.name, session.scopes)
        return {"token": token}

    @app.get("/")
    async def page() -> dict[str, str]:
        return {"page": "fleet"}

    @app.get("/api/fleet")
    async def fleet(request: Request) -> dict[str, str | None]:
        session = session_of(request.scope)
        return {"who": session.name if session else None}

    @app.post("/api/alerts/{alert_id}/ack")
    async def ack(alert_id: str, request: Request) -> dict[str, str | None]:
        session = session_of(request.scope)
        return {"by": session.name if session else None}

    @app.websocket("/_nicegui_ws/socket")
    async def live(ws: WebSocket) -> None:
        await ws.accept()
        await ws.send_text("hello")
        await ws.close()

    test_client = TestClient(app)
    test_client.checked = checked  # type: ignore[attr-defined]
    return test_client


def signed_in(client: TestClient, key: str) -> TestClient:
    token = client.post("/api/session", json={"key": key}).json()["token"]
    client.cookies.set(SESSION_COOKIE, token)
    return client


def test_without_a_session_a_page_goes_to_login_and_the_api_is_a_401(client: TestClient) -> None:
    page = client.get("/machine/x?y=1", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/machine/x"
    api = client.get("/api/fleet")
    assert api.status_code == 401 and api.json()["required_scope"] == "read"
    assert "sign in with an API key" in api.json()["detail"]
    assert client.post("/api/alerts/a:rul_low:1/ack", json={}).status_code == 401
    assert client.get("/healthz").status_code == 200, "health needs no session"


def test_a_key_opens_a_session_and_the_operator_is_the_key(client: TestClient) -> None:
    signed_in(client, "vgl_operator")
    assert client.get("/").json() == {"page": "fleet"}
    assert client.get("/api/fleet").json() == {"who": "ops@plant"}
    assert client.post("/api/alerts/a:rul_low:1/ack", json={"by": "someone else"}).json() == {
        "by": "ops@plant"
    }


def test_changes_need_the_operate_scope(client: TestClient) -> None:
    signed_in(client, "vgl_reader")
    assert client.get("/api/fleet").status_code == 200
    refused = client.post("/api/alerts/a:rul_low:1/ack", json={})
    assert refused.status_code == 403 and refused.json()["required_scope"] == "operate"
    assert "viewer@plant" in refused.json()["detail"]


def test_a_key_without_read_opens_nothing(client: TestClient) -> None:
    answer = client.get("/api/fleet", headers={"X-API-Key": "vgl_ingest"})
    assert answer.status_code == 401


def test_a_json_client_may_send_its_key_instead(client: TestClient) -> None:
    assert client.get("/api/fleet", headers={"X-API-Key": "vgl_reader"}).json() == {"who": "viewer@plant"}
    assert client.get("/api/fleet", headers={"X-API-Key": "vgl_guess"}).status_code == 401


def test_a_forged_tampered_or_expired_session_is_none(client: TestClient, clock: Clock) -> None:
    signed_in(client, "vgl_reader")
    token = client.cookies[SESSION_COOKIE]
    payload, mac = token.split(".")
    forged = SessionSigner(b"another secret", 3600, clock).issue("k2", "ops@plant", ["read", "operate"])[0]
    elevated = KEYS["vgl_operator"].model_copy(update={"expires": clock.now + 3600}).model_dump_json()
    tampered = base64.urlsafe_b64encode(elevated.encode()).decode() + "." + mac
    for bad in (forged, tampered, payload, "junk", "a.b.c", ""):
        client.cookies.set(SESSION_COOKIE, bad)
        assert client.get("/api/fleet").status_code == 401, bad
    client.cookies.set(SESSION_COOKIE, token)
    assert client.get("/api/fleet").status_code == 200
    clock.now += 3601
    assert client.get("/api/fleet").status_code == 401, "expired"


def test_the_live_connection_needs_a_session(client: TestClient) -> None:
    with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect("/_nicegui_ws/socket") as ws:
        ws.receive_text()
    assert closed.value.code == 1008
    signed_in(client, "vgl_reader")
    with client.websocket_connect("/_nicegui_ws/socket") as ws:
        assert ws.receive_text() == "hello"


def test_a_session_checks_the_key_once(client: TestClient) -> None:
    signed_in(client, "vgl_reader")
    for _ in range(3):
        client.get("/api/fleet")
    assert client.checked == ["vgl_reader"]  # type: ignore[attr-defined]


def test_the_signer_round_trip() -> None:
    signer = SessionSigner(b"k" * 32, 60, lambda: 100.0)
    token, session = signer.issue("k1", "n", ["read"])
    assert signer.read(token) == session and session.expires == 160.0
