"""HTTP and Dapr wiring of the alerting service; the logic is in service.py and domain.py."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

import grpc
from dapr.aio.clients import DaprClient
from dapr.clients.exceptions import DaprInternalError
from dapr.ext.fastapi import DaprApp
from fastapi import Body, Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from apps.alerting.domain import (
    AlertAlreadyCleared,
    AlertFilter,
    AlertNotFound,
    AlertRecord,
    DeadLetter,
    Envelope,
    FleetPublic,
    LifecycleState,
    MalformedEvent,
    decode_envelope,
)
from apps.alerting.notifier import LoggingNotifier
from apps.alerting.service import AlertingService, Outcome
from apps.alerting.settings import AlertingSettings, get_settings
from apps.alerting.store import DaprAlertingRepository
from apps.common.contracts import EQUIPMENT_ID_PATTERN, AlertKind, Severity, Status
from apps.common.names import PUBSUB, TOPIC_ALERTS, TOPIC_EQUIPMENT_HEALTH, TOPIC_READINGS_DEAD_LETTER

log = logging.getLogger("alerting")


def build_service(repo: DaprAlertingRepository, settings: AlertingSettings) -> AlertingService:
    return AlertingService(
        repo,
        LoggingNotifier(),
        dead_letter_retention=settings.dead_letter_retention,
        max_alerts=settings.max_alerts,
        max_conflict_retries=settings.max_conflict_retries,
    )


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    async with DaprClient() as client:
        repo = DaprAlertingRepository(
            client, chunk=settings.bulk_read_chunk, dedupe_ttl_seconds=settings.dead_letter_dedupe_seconds
        )
        app.state.service = build_service(repo, settings)
        yield


app = FastAPIOffline(title="Vigil alerting", lifespan=lifespan)
dapr_app = DaprApp(app)


def get_service(request: Request) -> AlertingService:
    return request.app.state.service  # type: ignore[no-any-return]


ServiceDep = Annotated[AlertingService, Depends(get_service)]
SettingsDep = Annotated[AlertingSettings, Depends(get_settings)]


@app.exception_handler(AlertNotFound)
async def _not_found(request: Request, exc: AlertNotFound) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, 404)


@app.exception_handler(AlertAlreadyCleared)
async def _cleared(request: Request, exc: AlertAlreadyCleared) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, 409)


@app.exception_handler(grpc.RpcError)
@app.exception_handler(DaprInternalError)
async def _store_down(request: Request, exc: Exception) -> JSONResponse:
    # The sidecar or the store behind it failed: a retryable 503 with a reason, never a stack trace.
    log.warning("state store call failed for %s %s: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": "state store unavailable, try again"}, 503)


# ---------------------------------------------------------------------- subscriptions
Handler = Callable[[AlertingService, Envelope, str], Awaitable[Outcome]]


async def _deliver(
    request: Request, service: AlertingService, topic: str, handler: Handler
) -> dict[str, str]:
    """Decode the CloudEvent ourselves (not via a Body model), so a malformed one is DROPped, not 422'd."""
    body = await request.body()
    try:
        try:
            envelope = decode_envelope(body)
        except MalformedEvent as exc:
            outcome = await service.on_undecodable(body, topic, str(exc))
        else:
            outcome = await handler(service, envelope, topic)
    except Exception:
        # Store or sidecar trouble, not the message's fault: redeliver (handling is idempotent).
        log.exception("handling a %s message failed; asking Dapr to redeliver it", topic)
        outcome = Outcome.RETRY
    return {"status": outcome.value}


async def on_alerts(request: Request, service: ServiceDep) -> dict[str, str]:
    return await _deliver(request, service, TOPIC_ALERTS, AlertingService.on_alert)


async def on_equipment_health(request: Request, service: ServiceDep) -> dict[str, str]:
    return await _deliver(request, service, TOPIC_EQUIPMENT_HEALTH, AlertingService.on_health)


async def on_readings_dead_letter(request: Request, service: ServiceDep) -> dict[str, str]:
    return await _deliver(request, service, TOPIC_READINGS_DEAD_LETTER, AlertingService.on_dead_letter)


# DaprApp.subscribe returns None for the decorated name, so the handlers stay named functions.
dapr_app.subscribe(pubsub=PUBSUB, topic=TOPIC_ALERTS)(on_alerts)
dapr_app.subscribe(pubsub=PUBSUB, topic=TOPIC_EQUIPMENT_HEALTH)(on_equipment_health)
dapr_app.subscribe(pubsub=PUBSUB, topic=TOPIC_READINGS_DEAD_LETTER)(on_readings_dead_letter)


# ---------------------------------------------------------------------- HTTP API
class AckRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    by: Annotated[StrictStr | None, Field(max_length=128, examples=["operator@plant-3"])] = None


AlertId = Annotated[str, Path(min_length=5, max_length=256, examples=["engine-001:rul_low:1"])]


@app.get("/v1/alerts", response_model=list[AlertRecord])
async def list_alerts(
    service: ServiceDep,
    equipment_id: Annotated[str | None, Query(pattern=EQUIPMENT_ID_PATTERN)] = None,
    state: LifecycleState | None = None,
    kind: AlertKind | None = None,
    severity: Severity | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> list[AlertRecord]:
    """Alerts, newest raised first, filtered by any of machine, lifecycle state, kind and severity."""
    flt = AlertFilter(equipment_id=equipment_id, state=state, kind=kind, severity=severity)
    return await service.list_alerts(flt, limit)


@app.get("/v1/alerts/{alert_id}", response_model=AlertRecord)
async def get_alert(alert_id: AlertId, service: ServiceDep) -> AlertRecord:
    return await service.get_alert(alert_id)


@app.post("/v1/alerts/{alert_id}/ack", response_model=AlertRecord)
async def ack_alert(
    alert_id: AlertId, service: ServiceDep, body: Annotated[AckRequest | None, Body()] = None
) -> AlertRecord:
    """Acknowledge an alert: 404 if unknown, 409 if already cleared; acknowledging twice is fine."""
    return await service.acknowledge(alert_id, body.by if body else None)


@app.get("/v1/fleet", response_model=FleetPublic)
async def fleet(service: ServiceDep, status: Status | None = None) -> FleetPublic:
    """The latest HealthSnapshot per machine (optionally only those in `status`) and counts per status."""
    return await service.fleet(status)


@app.get("/v1/dead-letters", response_model=list[DeadLetter])
async def dead_letters(
    service: ServiceDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=1_000_000)] = 1000,
) -> list[DeadLetter]:
    """Dead letters, newest received first (the store keeps about the last `dead_letter_retention`)."""
    return await service.dead_letters(min(limit, settings.dead_letter_retention))


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
