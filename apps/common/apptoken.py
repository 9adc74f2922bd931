"""The app token: an app answers only its own sidecar (Dapr's APP_API_TOKEN).

With APP_API_TOKEN set (`vigil up` sets it for every app, Kubernetes from the app-api-token secret),
the sidecar sends it as `dapr-api-token` on every call it makes to the app (service invocation, pub/sub
deliveries, actor calls, bindings); a request without it is answered 401 before any route sees it, so a
local process cannot ack an alert, post a forged delivery to a subscription route or call an actor
method by going to an app's port directly. Without APP_API_TOKEN nothing is checked, as with daprd.

Open to anyone: the health checks (Kubernetes probes come without the token), Prometheus' `/metrics`
and the API's own description (`/docs`, `/redoc`, `/openapi.json` and their assets: no data, only
what the routes are).
Apps that people use directly (the gateway, the dashboard's pages) guard only the Dapr routes.
"""

from __future__ import annotations

import hmac
import json
import os
from typing import Final

from apps.common.asgi import ASGIApp, Receive, Scope, Send

TOKEN_HEADER: Final = b"dapr-api-token"
# /metrics: Prometheus scrapes the app directly, not through the sidecar, so it has no app token.
OPEN_PATHS: Final = frozenset(
    {"/healthz", "/readyz", "/metrics", "/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"}
)
OPEN_PREFIXES: Final = ("/static-offline-docs/",)
# What a sidecar calls: subscriptions and their deliveries, actor calls and configuration.
DAPR_PREFIXES: Final = ("/dapr/", "/events/", "/actors/")


class AppTokenGuard:
    """ASGI middleware: 401 for a request without the app token, where one is required.

    `dapr_routes_only` is for apps whose other routes are meant for people (the gateway's public API,
    the dashboard's pages): only what a sidecar calls needs the token there.
    """

    def __init__(self, app: ASGIApp, token: str | None = None, dapr_routes_only: bool = False) -> None:
        self.app = app
        self.token = (token if token is not None else os.environ.get("APP_API_TOKEN", "")).encode()
        self.dapr_routes_only = dapr_routes_only

    def needs_token(self, path: str) -> bool:
        if self.dapr_routes_only:
            return path.startswith(DAPR_PREFIXES)
        return path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.token or scope["type"] != "http" or not self.needs_token(str(scope.get("path", ""))):
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", []) if k.lower() == TOKEN_HEADER), b"")
        if hmac.compare_digest(given, self.token):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": "missing or wrong app token: only this app's Dapr sidecar may call it"})
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})
