"""Sign-in: the dashboard answers only someone holding a gateway API key (issue 10: "the dashboard signs
in with a key, or a session derived from one").

The key is checked by the gateway, which owns the keys (`GET /api/v1/whoami` through Dapr service
invocation); the dashboard keeps no key, only a session derived from one: a cookie with the key's id,
name and scopes and an expiry, signed with HMAC-SHA256 (HttpOnly, SameSite=Strict). Every route needs
it except the sign-in itself, health and Dapr's calls (the subscriptions come from the sidecar, and app
tokens guard them); a call without it gets 401 (a page: a redirect to /login). A JSON client may send
its key as `X-API-Key` instead. Changes (acknowledge, resolve, retire) need the `operate` scope, and
are recorded under the key's name: the operator is the key, never what a form says.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Any, Final
from urllib.parse import quote

from pydantic import BaseModel, ValidationError

from apps.common.asgi import ASGIApp, Message, Receive, Scope, Send

SESSION_COOKIE: Final = "vigil_session"
OPERATE: Final = "operate"
READ: Final = "read"
STATE_KEY: Final = "vigil_session"  # where the guard leaves the session in the ASGI scope's state
_OPEN: Final = ("/healthz", "/login", "/api/session", "/dapr/", "/events/")
_CHANGES: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Session(BaseModel):
    key_id: str
    name: str
    scopes: list[str]
    expires: float  # epoch seconds


Verify = Callable[[str], Awaitable[Session | None]]


class SessionSigner:
    def __init__(
        self, secret: bytes, lifetime_seconds: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.secret = secret
        self.lifetime = lifetime_seconds
        self.clock = clock

    def issue(self, key_id: str, name: str, scopes: list[str]) -> tuple[str, Session]:
        session = Session(key_id=key_id, name=name, scopes=scopes, expires=self.clock() + self.lifetime)
        payload = base64.urlsafe_b64encode(session.model_dump_json().encode()).decode()
        return f"{payload}.{self._mac(payload)}", session

    def read(self, token: str) -> Session | None:
        """The session a token carries, or None: not signed by this secret, malformed or expired."""
        payload, _, mac = token.partition(".")
        if not payload or not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            session = Session.model_validate_json(base64.urlsafe_b64decode(payload.encode()))
        except (ValueError, ValidationError):
            return None
        return session if session.expires > self.clock() else None

    def _mac(self, payload: str) -> str:
        return hmac.new(self.secret, payload.encode(), hashlib.sha256).hexdigest()


def session_of(scope: Scope) -> Session | None:
    """The session the guard found for this request (None when sign-in is off)."""
    state = scope.get("state") or {}
    found = state.get(STATE_KEY)
    return found if isinstance(found, Session) else None


class SignInGuard:
    """ASGI middleware: a valid session (or a verified X-API-Key) before any route, `operate` for changes."""

    def __init__(self, app: ASGIApp, signer: SessionSigner, verify: Verify) -> None:
        self.app = app
        self.signer = signer
        self.verify = verify

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        if path.startswith(_OPEN):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        session = self._from_cookie(headers.get("cookie", ""))
        if session is None and headers.get("x-api-key"):
            session = await self.verify(headers["x-api-key"])
        if scope["type"] == "websocket":
            if session is None:  # NiceGUI's live connection: no session, no updates
                await receive()
                await send({"type": "websocket.close", "code": 1008})
                return
        elif session is None or READ not in session.scopes:
            await self._refuse(scope, send, 401, "sign in with an API key (vigil keys create) at /login")
            return
        elif scope["method"] in _CHANGES and path.startswith("/api/") and OPERATE not in session.scopes:
            await self._refuse(scope, send, 403, f"the API key '{session.name}' lacks the 'operate' scope")
            return
        scope.setdefault("state", {})[STATE_KEY] = session
        await self.app(scope, receive, send)

    def _from_cookie(self, header: str) -> Session | None:
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(header)
        except Exception:  # a malformed Cookie header is no session
            return None
        morsel = cookie.get(SESSION_COOKIE)
        return None if morsel is None else self.signer.read(morsel.value)

    async def _refuse(self, scope: Scope, send: Send, status: int, detail: str) -> None:
        path = str(scope.get("path", ""))
        if status == 401 and scope["method"] == "GET" and not path.startswith(("/api/", "/_nicegui")):
            location = "/login?next=" + quote(path, safe="/")
            await _answer(send, 303, b"", [(b"location", location.encode())])
            return
        body: dict[str, Any] = {"detail": detail, "required_scope": READ if status == 401 else OPERATE}
        await _answer(send, status, json.dumps(body).encode(), [(b"content-type", b"application/json")])


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
    }
    await send(start)
    await send({"type": "http.response.body", "body": body})


LOGIN_PAGE: Final = """<!doctype html>
<html><head><meta charset="utf-8"><title>Vigil sign in</title></head>
<body style="font-family: sans-serif; max-width: 28rem; margin: 4rem auto">
<h1>Vigil</h1>
<p>Sign in with an API key of the gateway (<code>vigil keys create</code>; the <code>read</code> scope to
look, <code>operate</code> to acknowledge, resolve and retire).</p>
<form id="f"><input id="k" type="password" placeholder="vgl_..." autocomplete="off" style="width: 100%">
<button type="submit">Sign in</button></form>
<p id="e" style="color: #b00"></p>
<script>
document.getElementById("f").addEventListener("submit", async (event) => {
  event.preventDefault();
  const answer = await fetch("/api/session", {method: "POST", headers: {"content-type": "application/json"},
    body: JSON.stringify({key: document.getElementById("k").value})});
  if (answer.ok) {
    const next = new URLSearchParams(location.search).get("next") || "/";
    location.href = next.startsWith("/") && !next.startsWith("//") ? next : "/";
  } else {
    document.getElementById("e").textContent = (await answer.json()).detail;
  }
});
</script></body></html>
"""


def page_operator(typed: str | None) -> str | None:
    """Who acts from a page: the signed-in key's name (which needs `operate`: ActionRefused otherwise),
    or what the operator typed when sign-in is off."""
    from nicegui import context

    from apps.dashboard.ports import ActionRefused

    request = context.client.request
    session = None if request is None else session_of(request.scope)
    if session is None:
        return typed
    if OPERATE not in session.scopes:
        raise ActionRefused(f"the API key '{session.name}' lacks the 'operate' scope")
    return session.name
