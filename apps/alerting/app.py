"""HTTP and Dapr wiring of the alerting service; the logic is in service.py, lifecycle.py, domain.py and
notifications.py, the sending in sender.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Annotated

import grpc
from dapr.clients.exceptions import DaprInternalError
from fastapi import Body, Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from apps.alerting.domain import (
    DeadLetter,
    Envelope,
    FleetPublic,
    RetiredMachine,
    decode_envelope,
    envelope_of,
)
from apps.alerting.errors import AlertClosed, AlertNotFound, EquipmentUnavailable, MalformedEvent
from apps.alerting.lifecycle import AlertFilter, AlertRecord, LifecycleState
from apps.alerting.notifications import NotificationsPublic
from apps.alerting.outbox import DaprOutbox
from apps.alerting.ports import BindingChannel, DaprMachines
from apps.alerting.sender import NotificationSender
from apps.alerting.service import AlertingService, Outcome
from apps.alerting.settings import AlertingSettings, get_settings
from apps.alerting.store import DaprAlertingRepository
from apps.common.apptoken import AppTokenGuard
from apps.common.bulksub import BulkDaprApp, BulkEntry, bulk_answer, bulk_entries
from apps.common.contracts import EQUIPMENT_ID_PATTERN, AlertKind, Severity, Status
from apps.common.gctuning import tune_garbage_collector
from apps.common.httpguard import RequestGuard
from apps.common.metrics import instrument
from apps.common.names import (
    NOTIFICATIONS_BINDING,
    PUBSUB,
    TOPIC_ALERTS,
    TOPIC_EQUIPMENT_HEALTH,
    TOPIC_READINGS_DEAD_LETTER,
)
from apps.common.nativetelemetry import TELEMETRY_OFF
from apps.common.tracecontext import dapr_client

log = logging.getLogger("alerting")


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    machines = DaprMachines()
    async with dapr_client() as client:
        repo = DaprAlertingRepository(
            client, chunk=settings.bulk_read_chunk, dedupe_ttl_seconds=settings.dead_letter_dedupe_seconds
        )
        outbox = DaprOutbox(client, chunk=settings.bulk_read_chunk)
        sender = NotificationSender(outbox, BindingChannel(client), settings.sender_settings())
        app.state.sender = sender
        app.state.service = AlertingService(
            repo,
            machines,
            policy=settings.notify_policy(),
            dead_letter_retention=settings.dead_letter_retention,
            max_alerts=settings.max_alerts,
            max_conflict_retries=settings.max_conflict_retries,
            max_clock_skew=timedelta(seconds=settings.max_clock_skew_seconds),
            on_notify=sender.wake,
        )
        # Notifications are sent in the background: an alert change only waits for its own write.
        sending = asyncio.create_task(sender.run(), name="notification-sender")
        try:
            tune_garbage_collector()  # the app is up: what it holds now stays (gctuning.py)
            yield
        finally:
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sending
            await machines.close()


app = FastAPIOffline(telemetry=TELEMETRY_OFF, title="Vigil alerting", lifespan=lifespan)
app.add_middleware(RequestGuard)
app.add_middleware(AppTokenGuard)  # outside RequestGuard: refused before any parsing
instrument(app)  # added last: outermost, every answer counted
dapr_app = BulkDaprApp(app)


def get_service(request: Request) -> AlertingService:
    return request.app.state.service  # type: ignore[no-any-return]


def get_sender(request: Request) -> NotificationSender:
    return request.app.state.sender  # type: ignore[no-any-return]


ServiceDep = Annotated[AlertingService, Depends(get_service)]
SenderDep = Annotated[NotificationSender, Depends(get_sender)]
SettingsDep = Annotated[AlertingSettings, Depends(get_settings)]


@app.exception_handler(AlertNotFound)
async def _not_found(request: Request, exc: AlertNotFound) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, 404)


@app.exception_handler(AlertClosed)
async def _closed(request: Request, exc: AlertClosed) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, 409)


@app.exception_handler(EquipmentUnavailable)
async def _equipment_down(request: Request, exc: EquipmentUnavailable) -> JSONResponse:
    return JSONResponse({"detail": f"{exc}; nothing was changed, try again"}, 503)


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
    return await _deliver_body(await request.body(), service, topic, handler)


async def _deliver_body(
    body: bytes, service: AlertingService, topic: str, handler: Handler
) -> dict[str, str]:
    """Decode the CloudEvent ourselves (not via a Body model), so a malformed one is DROPped, not 422'd."""
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


async def on_equipment_health(request: Request, service: ServiceDep) -> dict[str, object]:
    body = await request.body()
    entries = bulk_entries(body, request.headers.get("content-type", ""))
    if entries is None:  # one CloudEvent: a sidecar without bulkSubscribe, or a redelivery path
        return await _deliver_body(body, service, TOPIC_EQUIPMENT_HEALTH, AlertingService.on_health)
    return bulk_answer(await _deliver_health_batch(service, entries))


async def _deliver_health_batch(service: AlertingService, entries: list[BulkEntry]) -> list[tuple[str, str]]:
    """Per-entry statuses of a bulk delivery: a malformed entry DROPped (kept as a dead letter, as the
    single handler does), the snapshots recorded together; store trouble -> RETRY for those not dropped."""
    topic = TOPIC_EQUIPMENT_HEALTH
    statuses: dict[str, str] = {}
    decoded: list[tuple[str, Envelope]] = []
    for entry in entries:
        try:
            decoded.append((entry.entry_id, envelope_of(entry.event)))
        except MalformedEvent as exc:
            try:
                raw = json.dumps(entry.event).encode()
                statuses[entry.entry_id] = (await service.on_undecodable(raw, topic, str(exc))).value
            except Exception:
                log.exception("keeping a malformed %s entry failed; asking Dapr to redeliver it", topic)
                statuses[entry.entry_id] = Outcome.RETRY.value
    try:
        outcomes = await service.on_health_many([envelope for _, envelope in decoded], topic)
    except Exception:
        log.exception("handling %d %s messages failed; asking Dapr to redeliver them", len(decoded), topic)
        outcomes = [Outcome.RETRY] * len(decoded)
    for (entry_id, _), outcome in zip(decoded, outcomes, strict=True):
        statuses[entry_id] = outcome.value
    return [(entry.entry_id, statuses[entry.entry_id]) for entry in entries]


async def on_readings_dead_letter(request: Request, service: ServiceDep) -> dict[str, str]:
    return await _deliver(request, service, TOPIC_READINGS_DEAD_LETTER, AlertingService.on_dead_letter)


def _health_bulk_limits() -> tuple[int, int]:
    settings = get_settings()
    return settings.health_bulk_max_messages, settings.health_bulk_max_await_ms


# DaprApp.subscribe returns None for the decorated name, so the handlers stay named functions.
dapr_app.subscribe(pubsub=PUBSUB, topic=TOPIC_ALERTS)(on_alerts)
# Snapshots come in bulk (one POST per batch, see apps/common/bulksub.py); the route takes single
# CloudEvents as well.
dapr_app.bulk_subscribe(pubsub=PUBSUB, topic=TOPIC_EQUIPMENT_HEALTH, limits=_health_bulk_limits)(
    on_equipment_health
)
dapr_app.subscribe(pubsub=PUBSUB, topic=TOPIC_READINGS_DEAD_LETTER)(on_readings_dead_letter)


# ---------------------------------------------------------------------- HTTP API
class OperatorRequest(BaseModel):
    """Who does it, and why (kept in the alert's history and sent with its notification)."""

    model_config = ConfigDict(extra="forbid")

    by: Annotated[StrictStr | None, Field(max_length=128, examples=["operator@plant-3"])] = None
    note: Annotated[StrictStr, Field(max_length=2000, examples=["bearing noise confirmed on site"])] = ""

    @property
    def who(self) -> str:
        return (self.by or "").strip() or "unknown"


# Any text: an id that cannot be an alert's is a 404 like any unknown one (never a 422).
AlertId = Annotated[str, Path(examples=["engine-001:rul_low:1"])]
OperatorBody = Annotated[OperatorRequest | None, Body()]


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
    """One alert with its history (every change: who, when, what, note); 404 if unknown."""
    return await service.get_alert(alert_id)


@app.post("/v1/alerts/{alert_id}/ack", response_model=AlertRecord)
async def ack_alert(alert_id: AlertId, service: ServiceDep, body: OperatorBody = None) -> AlertRecord:
    """Acknowledge an alert, with a note: 404 if unknown, 409 (saying why) if cleared or resolved;
    again on an acknowledged one it adds the note."""
    request = body or OperatorRequest()
    return await service.acknowledge(alert_id, request.who, request.note)


@app.post("/v1/alerts/{alert_id}/resolve", response_model=AlertRecord)
async def resolve_alert(alert_id: AlertId, service: ServiceDep, body: OperatorBody = None) -> AlertRecord:
    """Close an alert the machine has not cleared (its actor ends the episode: if the condition
    persists, a new alert opens): 404 if unknown, 409 if cleared or resolved, 503 if the machine's
    actor does not answer (nothing changed)."""
    request = body or OperatorRequest()
    return await service.resolve(alert_id, request.who, request.note)


@app.delete("/v1/fleet/{equipment_id}", response_model=RetiredMachine)
async def retire_machine(equipment_id: str, service: ServiceDep, body: OperatorBody = None) -> RetiredMachine:
    """Retire a machine: it is no longer watched (no silence alerts), its open alerts are resolved and
    it leaves the fleet view until it sends readings again. 404 if unknown, 503 if its actor does
    not answer."""
    request = body or OperatorRequest()
    return await service.retire(equipment_id, request.who, request.note)


@app.get("/v1/notifications", response_model=NotificationsPublic)
async def notifications(sender: SenderDep) -> NotificationsPublic:
    """Whether the notification webhook takes alert changes: pending, failing (with the last error),
    delivered, given up."""
    return await sender.status(NOTIFICATIONS_BINDING)


@app.get("/v1/fleet", response_model=FleetPublic)
async def fleet(service: ServiceDep, status: Status | None = None) -> FleetPublic:
    """The latest HealthSnapshot per machine (optionally only those in `status`) and counts per status."""
    return await service.fleet.view(status)


@app.get("/v1/dead-letters", response_model=list[DeadLetter])
async def dead_letters(
    service: ServiceDep,
    settings: SettingsDep,
    limit: Annotated[int, Query(ge=1, le=1_000_000)] = 1000,
) -> list[DeadLetter]:
    """Dead letters, newest received first (the store keeps about the last `dead_letter_retention`)."""
    return await service.letters.newest(min(limit, settings.dead_letter_retention))


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
