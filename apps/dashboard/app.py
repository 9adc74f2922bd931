"""HTTP and Dapr wiring of the dashboard; the views are in service.py and domain.py, the pages in
pages.py, live updates in live.py.

One FastAPI app: `/healthz`, the JSON API (`/api/...`, the rows the pages show), Dapr's
subscription routes, `/docs`, and NiceGUI mounted at `/` (`ui.run_with`, last, so it only gets
the paths the app's own routes do not take).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Body, FastAPI, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi_offline import FastAPIOffline
from nicegui import ui
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from apps.common.apptoken import AppTokenGuard
from apps.common.bulksub import BulkDaprApp, bulk_answer, bulk_entries
from apps.common.contracts import EQUIPMENT_ID_PATTERN
from apps.common.gctuning import tune_garbage_collector
from apps.common.httpguard import RequestGuard
from apps.common.metrics import instrument
from apps.common.names import PUBSUB, TOPIC_ALERTS, TOPIC_EQUIPMENT_HEALTH, TOPIC_MODEL_UPDATES
from apps.common.nativetelemetry import TELEMETRY_OFF
from apps.dashboard.domain import alert_row
from apps.dashboard.live import deliver, deliver_bulk
from apps.dashboard.pages import register_pages
from apps.dashboard.ports import ActionRefused, AlertNotFound, BackendUnavailable, DaprDashboardBackend
from apps.dashboard.service import DashboardService
from apps.dashboard.settings import get_settings
from apps.dashboard.signin import (
    LOGIN_PAGE,
    READ,
    SESSION_COOKIE,
    Session,
    SessionSigner,
    SignInGuard,
    session_of,
)

log = logging.getLogger("dashboard")
service = DashboardService(get_settings())


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    backend = DaprDashboardBackend(get_settings().call_timeout_seconds)
    service.backend_ = backend
    try:
        tune_garbage_collector()  # the app is up: what it holds now stays (gctuning.py)
        yield
    finally:
        service.backend_ = None
        await backend.close()


async def verify_key(key: str) -> Session | None:
    """The session a gateway API key opens; None if the gateway refuses it or cannot be asked."""
    backend = service.backend_
    if backend is None:
        return None
    try:
        return await backend.whoami(key)
    except BackendUnavailable as exc:
        log.warning("sign-in: the gateway could not check a key: %s", exc)
        return None


_settings = get_settings()
signer = SessionSigner(
    _settings.session_secret.get_secret_value().encode() or secrets.token_bytes(32),
    _settings.session_hours * 3600,
)
app = FastAPIOffline(telemetry=TELEMETRY_OFF, title="Vigil dashboard", lifespan=lifespan)
# NiceGUI's own traffic (socket.io polling posts text/plain) is its business, not a JSON API's.
app.add_middleware(RequestGuard, exempt=("/_nicegui",))
if _settings.sign_in:
    app.add_middleware(SignInGuard, signer=signer, verify=verify_key)  # before any body is read
app.add_middleware(AppTokenGuard, dapr_routes_only=True)  # people use its other routes
instrument(app)  # added last: outermost, every answer counted
dapr_app = BulkDaprApp(app)


@app.exception_handler(BackendUnavailable)
async def _unavailable(request: Request, exc: BackendUnavailable) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, 503)


@app.exception_handler(AlertNotFound)
async def _not_found(request: Request, exc: AlertNotFound) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, 404)


@app.exception_handler(ActionRefused)
async def _refused(request: Request, exc: ActionRefused) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, 409)


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/api/fleet")
async def fleet() -> dict[str, Any]:
    """Every machine's fleet row (worst first) and the machines per status, as the fleet view shows."""
    view = await service.fleet()
    counts = view.counts()
    return {"total": sum(counts.values()), "counts": counts, "rows": view.rows()}


@app.get("/api/machines/{equipment_id}")
async def machine(equipment_id: Annotated[str, Path(pattern=EQUIPMENT_ID_PATTERN)]) -> dict[str, Any]:
    """A machine's health, RUL chart (ECharts options, thresholds included), top sensors and alerts."""
    return (await service.machine(equipment_id)).to_json()


@app.get("/api/alerts")
async def alerts() -> dict[str, Any]:
    """Alerts per lifecycle state and their rows (open first, then acknowledged, then cleared)."""
    return await service.alerts_json()


class SignInRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: Annotated[StrictStr, Field(min_length=1, max_length=256, examples=["vgl_..."])]


@app.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login() -> HTMLResponse:
    return HTMLResponse(LOGIN_PAGE)


@app.post("/api/session", responses={401: {"description": "Not a valid key, or without the read scope."}})
async def sign_in(body: SignInRequest) -> JSONResponse:
    """Exchange a gateway API key (checked by the gateway) for a signed session cookie."""
    session = await verify_key(body.key)
    if session is None or READ not in session.scopes:
        detail = "the API key is not valid (unknown, revoked or the gateway unreachable) or lacks 'read'"
        return JSONResponse({"detail": detail, "required_scope": READ}, 401)
    token, issued = signer.issue(session.key_id, session.name, session.scopes)
    answer = JSONResponse({"name": issued.name, "scopes": issued.scopes, "expires": issued.expires})
    max_age = int(signer.lifetime)
    answer.set_cookie(SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="strict", path="/")
    return answer


@app.delete("/api/session")
async def sign_out() -> JSONResponse:
    answer = JSONResponse({"signed_out": True})
    answer.delete_cookie(SESSION_COOKIE, path="/")
    return answer


def operator(http: Request, typed: str | None) -> str | None:
    """The signed-in key's name when sign-in is on (the operator is the key), else what was sent."""
    session = session_of(http.scope)
    return typed if session is None else session.name


class OperatorRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: Annotated[StrictStr | None, Field(max_length=128)] = None
    note: Annotated[StrictStr, Field(max_length=2000)] = ""


OperatorBody = Annotated[OperatorRequest | None, Body()]


@app.post("/api/alerts/{alert_id}/ack")
async def acknowledge(http: Request, alert_id: str, body: OperatorBody = None) -> dict[str, Any]:
    """Acknowledge through alerting, as the alerts page does (404 unknown, 409 cleared or resolved)."""
    request = body or OperatorRequest()
    return alert_row(await service.acknowledge(alert_id, operator(http, request.by), request.note))


@app.post("/api/alerts/{alert_id}/resolve")
async def resolve(http: Request, alert_id: str, body: OperatorBody = None) -> dict[str, Any]:
    """Resolve through alerting, as the alerts page does (404 unknown, 409 cleared or resolved, 503 when
    the machine's actor does not answer)."""
    request = body or OperatorRequest()
    return alert_row(await service.resolve(alert_id, operator(http, request.by), request.note))


@app.delete("/api/machines/{equipment_id}")
async def retire(http: Request, equipment_id: str, body: OperatorBody = None) -> dict[str, Any]:
    """Retire a machine through alerting, as the machine page does: `{resolved_alerts}`."""
    request = body or OperatorRequest()
    by = operator(http, request.by)
    return {"resolved_alerts": await service.retire(equipment_id, by, request.note)}


@app.get("/api/notifications")
async def notifications() -> dict[str, Any]:
    """Whether alert notifications get through (alerting's `GET /v1/notifications`)."""
    return (await service.notifications()).model_dump(mode="json")


@app.get("/api/models")
async def models() -> dict[str, Any]:
    """The registry's versions with their model cards, the champion and what inference serves."""
    return (await service.models()).to_json()


# ---------------------------------------------------------------------- subscriptions
async def on_alerts(request: Request) -> dict[str, str]:
    return {"status": deliver(service.hub, TOPIC_ALERTS, await request.body())}


async def on_equipment_health(request: Request) -> dict[str, object]:
    body = await request.body()
    entries = bulk_entries(body, request.headers.get("content-type", ""))
    if entries is None:  # one CloudEvent (a sidecar without bulkSubscribe)
        return {"status": deliver(service.hub, TOPIC_EQUIPMENT_HEALTH, body)}
    return bulk_answer(deliver_bulk(service.hub, TOPIC_EQUIPMENT_HEALTH, entries))


def _health_bulk_limits() -> tuple[int, int]:
    settings = get_settings()
    return settings.health_bulk_max_messages, settings.health_bulk_max_await_ms


async def on_model_updates(request: Request) -> dict[str, str]:
    return {"status": deliver(service.hub, TOPIC_MODEL_UPDATES, await request.body())}


dapr_app.subscribe(pubsub=PUBSUB, topic=TOPIC_ALERTS)(on_alerts)
# Snapshots come in bulk (apps/common/bulksub.py); the route takes single CloudEvents as well.
dapr_app.bulk_subscribe(pubsub=PUBSUB, topic=TOPIC_EQUIPMENT_HEALTH, limits=_health_bulk_limits)(
    on_equipment_health
)
dapr_app.subscribe(pubsub=PUBSUB, topic=TOPIC_MODEL_UPDATES)(on_model_updates)

register_pages(service)
ui.run_with(app, title="Vigil", show_welcome_message=False)
