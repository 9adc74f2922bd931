"""HTTP and Dapr wiring of the gateway; the routes are in api.py, the rules in service.py and keys.py."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from apps.common.apptoken import AppTokenGuard
from apps.common.gctuning import tune_garbage_collector
from apps.common.httpguard import RequestGuard
from apps.common.metrics import instrument
from apps.common.nativetelemetry import TELEMETRY_OFF
from apps.common.profiles import PROFILES
from apps.common.tracecontext import dapr_client
from apps.gateway.api import router
from apps.gateway.context import RequestContextMiddleware, RequestIdFilter
from apps.gateway.keys import KeyService
from apps.gateway.ports import DaprKeyStore, DaprUpstream
from apps.gateway.ratelimit import TokenBuckets
from apps.gateway.service import Gateway, GatewayError
from apps.gateway.settings import get_settings

_handler = logging.StreamHandler()
_handler.addFilter(RequestIdFilter())
_handler.setFormatter(logging.Formatter("%(levelname)s [%(request_id)s] %(name)s: %(message)s"))
logging.getLogger("gateway").addHandler(_handler)
logging.getLogger("gateway").setLevel(logging.INFO)
logging.getLogger("gateway").propagate = False


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    upstream = DaprUpstream(int(max(settings.call_timeout_seconds, settings.readings_timeout_seconds)) + 1)
    async with dapr_client() as client:
        keys = KeyService(DaprKeyStore(client), settings.key_cache_seconds)
        app.state.gateway = Gateway(upstream, keys, TokenBuckets(), settings, PROFILES)
        try:
            tune_garbage_collector()  # the app is up: what it holds now stays (gctuning.py)
            yield
        finally:
            await upstream.close()


app = FastAPIOffline(
    telemetry=TELEMETRY_OFF,
    title="Vigil gateway",
    description="The single public entry of Vigil: every route needs an API key (header `X-API-Key`, or "
    "`Authorization: Bearer`) with the scope the route names; `vigil keys create` makes one.",
    lifespan=lifespan,
)
app.add_middleware(RequestGuard, max_body_bytes=get_settings().max_body_bytes)
app.add_middleware(AppTokenGuard, dapr_routes_only=True)  # people use its other routes
app.add_middleware(RequestContextMiddleware)  # added last: outermost, so every answer gets the request id
instrument(app, edge=True)  # readings and clients arrive here: traces start here
app.include_router(router)


@app.exception_handler(GatewayError)
async def _refused(request: Request, exc: GatewayError) -> JSONResponse:
    return JSONResponse(exc.body(), exc.status, headers=exc.headers)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
