"""HTTP and Dapr wiring of the ingestion service; the logic is in service.py and validation.py."""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

from dapr.actor import ActorId
from dapr.ext.fastapi import DaprApp
from dapr.serializers import DefaultJSONSerializer
from fastapi import Body, Depends, FastAPI, Path, Request
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline

from apps.common.actor_interface import EquipmentActorInterface
from apps.common.apptoken import AppTokenGuard
from apps.common.archivestore import DaprArchive
from apps.common.contracts import (
    EQUIPMENT_ID_PATTERN,
    EquipmentEvent,
    EquipmentEventRequest,
    EquipmentIngestResult,
    HealthSnapshot,
    IngestResult,
    Reading,
)
from apps.common.daprhttp import PooledActorProxyFactory
from apps.common.fastroute import PostShortcut
from apps.common.gctuning import tune_garbage_collector
from apps.common.httpguard import ErrorDetail, RequestGuard, error_responses
from apps.common.metrics import instrument
from apps.common.names import EQUIPMENT_ACTOR_TYPE, PUBSUB, TOPIC_READINGS_DEAD_LETTER, TOPIC_SENSOR_READINGS
from apps.common.nativetelemetry import TELEMETRY_OFF
from apps.common.profiles import PROFILES, ProfileSpec
from apps.common.publisher import DaprPublisher
from apps.common.tracecontext import dapr_client
from apps.ingestion.events import BadEvent, EventService, parse_event_request
from apps.ingestion.linger import LingeringEquipment
from apps.ingestion.service import IngestionService, only_retryable, parse_json, readings_json
from apps.ingestion.settings import get_settings
from apps.ingestion.validation import InvalidBatch

log = logging.getLogger("ingestion")


class ActorEquipmentGateway:
    """EquipmentGateway (and MachineState) through Dapr actors: one `Ingest` call per machine per batch.

    Calls go through the SDK's ActorProxy, by `invoke_method` with the argument serialised and the
    answer deserialised as its RPC style (`proxy.Ingest(...)`) does: the same request and answer. The
    RPC style rebuilds the interface's method table (inspecting every method's signature) on each new
    proxy, i.e. on every call here, which cost more CPU than the rest of the call's client side
    (bench/bench_ingestion_route.py, "actor call")."""

    def __init__(self) -> None:
        self.factory = PooledActorProxyFactory()
        self._serializer = DefaultJSONSerializer()  # the factory's: what the RPC style uses

    async def close(self) -> None:
        await self.factory.close()

    async def _call(self, equipment_id: str, method: Callable[..., Any], arg: str | None = None) -> str:
        proxy = self.factory.create(EQUIPMENT_ACTOR_TYPE, ActorId(equipment_id), EquipmentActorInterface)
        body = None if arg is None else self._serializer.serialize(arg)
        answer = await proxy.invoke_method(method.__actormethod__, body)  # type: ignore[attr-defined]
        return self._serializer.deserialize(answer, str)  # type: ignore[no-any-return]

    async def ingest(self, equipment_id: str, readings: list[Reading]) -> EquipmentIngestResult:
        answer = await self._call(equipment_id, EquipmentActorInterface.ingest, readings_json(readings))
        return EquipmentIngestResult.model_validate_json(answer)

    async def last_seq(self, equipment_id: str) -> int | None:
        try:
            answer = await self._call(equipment_id, EquipmentActorInterface.get_health)
        except Exception as exc:
            if "has sent no readings" in str(exc):  # the actor's answer for a machine it never saw
                return None
            raise
        return HealthSnapshot.model_validate_json(answer).last_seq

    async def start_life(self, event: EquipmentEvent) -> None:
        start = json.dumps({"kind": event.kind, "seq": event.seq, "note": event.note})
        await self._call(event.equipment_id, EquipmentActorInterface.start_life, start)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    gateway = ActorEquipmentGateway()
    lingering = LingeringEquipment(gateway, settings.linger_seconds)
    async with dapr_client() as client:
        app.state.service = IngestionService(
            lingering,
            DaprPublisher(client),
            PROFILES,
            settings.max_concurrent_actor_calls,
            settings.handoff_linger_seconds,
        )
        app.state.events = EventService(gateway, DaprArchive(client))
        try:
            tune_garbage_collector()  # the app is up: what it holds now stays (gctuning.py)
            yield
        finally:
            await app.state.service.close()
            await lingering.close()
            await gateway.close()


READINGS_PATH = "/v1/readings"

app = FastAPIOffline(telemetry=TELEMETRY_OFF, title="Vigil ingestion", lifespan=lifespan)
# Innermost: readings skip FastAPI's routing (apps/common/fastroute.py), after every check below; the lambda
# because answer_readings is defined further down.
app.add_middleware(PostShortcut, path=READINGS_PATH, answer=lambda app_, body: answer_readings(app_, body))
app.add_middleware(
    RequestGuard, max_body_bytes=get_settings().max_body_bytes, numbers_checked_per_item=(READINGS_PATH,)
)
app.add_middleware(AppTokenGuard)  # outside RequestGuard: refused before any parsing
instrument(app, edge=True)  # readings and clients arrive here: traces start here
dapr_app = DaprApp(app)


async def get_service(request: Request) -> IngestionService:
    # async: FastAPI runs a plain-def dependency in its thread pool, a thread hop per request.
    return request.app.state.service  # type: ignore[no-any-return]


ServiceDep = Annotated[IngestionService, Depends(get_service)]


async def answer_readings(app_: FastAPI, body: bytes) -> tuple[int, bytes, dict[str, str]]:
    """POST /v1/readings: (status, JSON body, headers), for the route and for PostShortcut."""
    service: IngestionService = app_.state.service
    # Size, content type and nesting were checked by RequestGuard before this runs.
    try:
        raw = parse_json(body)
        result = await service.ingest(raw, source="http")
    except ValueError as exc:  # malformed JSON
        return 400, _detail(str(exc)), {}
    except InvalidBatch as exc:
        return 422, _detail(str(exc)), {}
    # Serialised by pydantic straight to JSON text (not to dicts, then json.dumps): the same document.
    content = result.__pydantic_serializer__.to_json(result)
    if only_retryable(result):
        # Nothing got in, through no fault of the readings: the standard "come back later" answer.
        return 503, content, {"Retry-After": str(get_settings().retry_after_seconds)}
    # Every reading rejected: the request as a whole was bad input. Partly good: 200 with the list
    # (a rejection marked `retryable` is to be sent again; the others were dead-lettered).
    bad = [r for r in result.rejected if not r.retryable]
    status = (
        422 if bad and len(bad) == len(result.rejected) and result.accepted == result.duplicates == 0 else 200
    )
    return status, content, {}


def _detail(message: str) -> bytes:
    # As JSONResponse renders {"detail": ...}.
    return json.dumps({"detail": message}, ensure_ascii=False, separators=(",", ":")).encode()


@app.post(
    READINGS_PATH,
    response_model=IngestResult,
    responses={
        422: {
            "model": IngestResult | ErrorDetail,
            "description": "Every reading rejected, or no usable batch.",
        },
        503: {"model": IngestResult, "description": "Nothing applied for a passing reason: send again."},
    }
    | error_responses(400),
)
async def post_readings(request: Request) -> Response:
    # Declared for /docs and OpenAPI; PostShortcut (apps/common/fastroute.py) answers requests first.
    status, content, headers = await answer_readings(request.app, await request.body())
    return Response(content, status, headers=headers, media_type="application/json")


async def on_sensor_readings(request: Request, event: dict = Body(...)) -> dict[str, str]:
    """Gateways that push: same validation; bad readings are dead-lettered by the service."""
    service: IngestionService = request.app.state.service
    data = event.get("data")
    try:
        result = await service.ingest(data, source="pubsub")
    except InvalidBatch as exc:
        await service.dead_letter(data, f"malformed sensor-readings message: {exc}", "pubsub")
        return {"status": "SUCCESS"}  # dead-lettered by us; do not redeliver a message that can never pass
    if any(r.retryable for r in result.rejected):
        return {"status": "RETRY"}  # actor unavailable: redeliver (seq dedupe keeps this safe)
    return {"status": "SUCCESS"}


dapr_app.subscribe(pubsub=PUBSUB, topic=TOPIC_SENSOR_READINGS, dead_letter_topic=TOPIC_READINGS_DEAD_LETTER)(
    on_sensor_readings
)


async def get_events(request: Request) -> EventService:
    return request.app.state.events  # type: ignore[no-any-return]


EventsDep = Annotated[EventService, Depends(get_events)]


# The body is parsed by parse_event_request (its 4xx name the field); the schema is declared for /docs.
_EVENT_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": EquipmentEventRequest.model_json_schema()}},
    }
}


@app.post(
    "/v1/equipment/{equipment_id}/events",
    status_code=201,
    response_model=EquipmentEvent,
    openapi_extra=_EVENT_BODY,
    responses=error_responses(400, 409, 422, 503),
)
async def post_event(equipment_id: str, request: Request, events: EventsDep) -> JSONResponse:
    """Record a failure, maintenance or replacement: it ends the machine's current life (a failure
    makes it a run to failure, whose RUL labels are then known). Kept in the archive, then the machine's
    actor starts its next life (its open alerts resolved); 201 with the event once both are done (the
    same event again: 201, nothing changes). 422 names the wrong field, 409 when `seq` is left out and
    the machine never sent a reading, 503 (Retry-After) when the machine's actor or the archive cannot
    be reached or the actor could not apply it: send it again."""
    try:
        parsed = parse_event_request(equipment_id, await request.body())
        event = await events.record(equipment_id, parsed, datetime.now(UTC))
    except BadEvent as exc:
        return JSONResponse({"detail": str(exc)}, exc.status)
    except Exception as exc:
        log.warning("event for %s not recorded: %s", equipment_id, exc)
        retry_after = str(get_settings().retry_after_seconds)
        detail = {"detail": f"not recorded, retry: {exc}"}
        return JSONResponse(detail, 503, headers={"Retry-After": retry_after})
    location = f"/v1/equipment/{equipment_id}/events"
    return JSONResponse(event.model_dump(mode="json"), 201, headers={"Location": location})


@app.get("/v1/equipment/{equipment_id}/events", response_model=list[EquipmentEvent])
async def list_events(
    equipment_id: Annotated[str, Path(pattern=EQUIPMENT_ID_PATTERN)], events: EventsDep
) -> list[EquipmentEvent]:
    """The machine's events (labels), oldest seq first."""
    return await events.list(equipment_id)


@app.get("/v1/profiles", response_model=list[ProfileSpec], response_model_exclude_none=True)
async def list_profiles(service: ServiceDep) -> list[ProfileSpec]:
    """Every kind of equipment readings are validated against (one file each in the profiles folder),
    as the file says it: channels and plausible ranges, model, window, alert thresholds, silence."""
    return [ProfileSpec.of(p) for _, p in sorted(service.profiles.items())]


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
