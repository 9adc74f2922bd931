"""The public API: every route with the scope it needs, its errors, and where it goes (Dapr service
invocation of the app behind it; the machine view combines several). The routes are thin: the rules
are in service.py (authorization, rate limits, forwarding) and keys.py.

Nothing from the client reaches a service unchecked: path ids match their pattern, query parameters are
declared and re-encoded (no parameter smuggling), bodies are JSON within their size and nesting limits
(RequestGuard) and the gateway's own bodies are strict models; the operator's name on an
acknowledgement or a resolve is the key's name, never a field the client chooses.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from apps.common.contracts import (
    EQUIPMENT_ID_PATTERN,
    MAX_BATCH_READINGS,
    AlertKind,
    EquipmentEvent,
    EquipmentEventRequest,
    IngestResult,
    Reading,
    Severity,
    Status,
    TrainRequest,
)
from apps.common.names import (
    ALERTING_APP_ID,
    ARCHIVER_APP_ID,
    INFERENCE_APP_ID,
    INGESTION_APP_ID,
    TRAINING_APP_ID,
)
from apps.common.profiles import ProfileSpec
from apps.common.registry import RegisteredModel
from apps.gateway.context import RequestContext, current
from apps.gateway.keys import KEY_ID_PATTERN, SCOPE_MEANING, KeyRecord, Principal, Scope
from apps.gateway.quota import equipment_ids
from apps.gateway.service import Gateway, GatewayError, MachineView

ALERT_ID_PATTERN: Final = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}:[a-z_]{1,32}:[1-9][0-9]{0,8}$"
JOB_ID_PATTERN: Final = r"^[0-9a-f]{12}$"
MODEL_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # training's own rule for a model name

router = APIRouter(prefix="/api/v1")
api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key (vigil keys create)."
)
bearer = HTTPBearer(auto_error=False, description="The same API key as a bearer token.")


class ErrorBody(BaseModel):
    detail: str
    required_scope: Scope | None = None
    quota: str | None = Field(None, description="The quota exceeded (a 429 of a quota, not a rate limit).")
    limit: int | None = None
    window_seconds: float | None = None
    new_ids: int | None = Field(None, description="Equipment ids of the call new to the platform.")
    used: int | None = Field(None, description="New ids the key already introduced in this window.")


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


def _service_answer(description: str) -> dict[str, Any]:
    # The service's own error body, passed on as it is (its shape is the service's).
    return {"description": description, "content": {"application/json": {"schema": {}}}}


_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
_NEW_ID_QUOTA = _error(
    "Rate limit of this key on this route, too many failed authentications, or the key's quota of "
    "machines new to the platform (`quota`: `new_equipment_ids`, with its limit and window)."
) | {"headers": _RETRY_AFTER}


def _responses(scope: Scope | None, body: bool, service: bool = True) -> dict[int | str, dict[str, Any]]:
    needed = f"`{scope}` ({SCOPE_MEANING[scope]})" if scope else "any scope"
    responses: dict[int | str, dict[str, Any]] = {
        401: _error("No API key, or not a valid one (unknown, malformed or revoked)."),
        403: _error(f"The key lacks the scope this route needs: {needed}."),
        429: _error("Rate limit of this key on this route, or too many failed authentications.")
        | {"headers": _RETRY_AFTER},
        503: _error("The key store, or the service behind this route (or its sidecar), is unavailable.")
        | {"headers": _RETRY_AFTER},
    }
    if body:
        responses |= {
            400: _error("Malformed JSON, or nested deeper than 32 levels."),
            413: _error("Body too large."),
            415: _error("Body not application/json."),
        }
    if service:
        responses |= {
            502: _error("The service behind this route failed."),
            504: _error("The service behind this route did not answer in time."),
        }
    return responses


def _gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


def _ctx() -> RequestContext:
    ctx = current()
    assert ctx is not None, "RequestContextMiddleware sets it for every request"
    return ctx


def needs(scope: Scope | None) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """The dependency that authenticates the caller, checks `scope` and spends a token of its bucket."""

    async def authorized(
        request: Request,
        key: Annotated[str | None, Security(api_key_header)],
        token: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
    ) -> Principal:
        presented = key or (token.credentials if token else None)
        route = request.scope.get("route")
        path = getattr(route, "path", request.url.path)
        client = request.client.host if request.client else "unknown"
        return await _gateway(request).authorize(presented, client, scope, f"{request.method} {path}")

    return authorized


def small_body(request: Request) -> None:
    """Routes with small bodies refuse big ones early (RequestGuard's limit is the readings' one)."""
    limit = _gateway(request).settings.max_small_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise GatewayError(413, f"body of {declared} bytes exceeds the limit of {limit} bytes for this route")


def _route(
    scope: Scope | None, summary: str, body: bool = False, service: bool = True, **extra: Any
) -> dict[str, Any]:
    return {
        "summary": summary,
        "responses": _responses(scope, body, service) | extra.pop("responses", {}),
        "openapi_extra": {"x-required-scope": scope or "any"} | extra.pop("openapi_extra", {}),
        "description": f"**Scope:** {f'`{scope}`' if scope else 'any valid key'}.\n\n"
        + extra.pop("description", ""),
        **extra,
    }


async def _pass(
    request: Request,
    app_id: str,
    path: str,
    *,
    verb: str = "GET",
    query: Sequence[tuple[str, Any]] = (),
    body: bytes = b"",
    timeout: float | None = None,
) -> Response:
    """Forward, and answer what the service answered (a 503 with the gateway's Retry-After)."""
    gateway = _gateway(request)
    params = [(k, str(v)) for k, v in query if v is not None]
    answer = await gateway.forward(app_id, path, _ctx(), verb=verb, query=params, body=body, timeout=timeout)
    headers = {"Retry-After": str(gateway.settings.retry_after_seconds)} if answer.status == 503 else {}
    return Response(answer.body, answer.status, headers=headers, media_type=answer.content_type)


EquipmentIdPath = Annotated[str, Path(pattern=EQUIPMENT_ID_PATTERN, examples=["fd001-001"])]
AlertIdPath = Annotated[str, Path(pattern=ALERT_ID_PATTERN, examples=["fd001-001:rul_low:1"])]
Strict = ConfigDict(extra="forbid")


class NoteBody(BaseModel):
    """An operator's note; who did it is the API key's name."""

    model_config = Strict

    note: Annotated[StrictStr, Field(max_length=2000, examples=["bearing noise confirmed on site"])] = ""


class EmptyBody(BaseModel):
    model_config = Strict


class KeyRequest(BaseModel):
    model_config = Strict

    name: Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9 ._@-]{1,64}$", examples=["line-3 gateway"])]
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=4, examples=[["ingest"]])]


class KeyInfo(BaseModel):
    id: str
    name: str
    scopes: list[Scope]
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, record: KeyRecord) -> KeyInfo:
        return cls(**record.model_dump(include={"id", "name", "scopes", "created_at", "revoked_at"}))


class NewKey(BaseModel):
    key: str = Field(description="The key itself: shown this once, stored nowhere (only its salted hash).")
    info: KeyInfo


class Me(BaseModel):
    key_id: str
    name: str
    scopes: list[str]


class OperatorCall(BaseModel):
    """What alerting is sent: the operator is the key, never the client's say."""

    by: str
    note: str


def _operator(principal: Principal, body: NoteBody | None) -> bytes:
    note = body.note if body else ""
    return OperatorCall(by=principal.name, note=note).model_dump_json().encode()


Version = Annotated[StrictInt, Field(ge=1, le=2**31, examples=[2])]
ModelNote = Annotated[StrictStr, Field(max_length=500, examples=["field trial on line 3"])]


class PromoteBody(BaseModel):
    """The version to make champion, and why; who did it is the API key's name."""

    model_config = Strict

    version: Version
    note: ModelNote = ""


class RollbackBody(BaseModel):
    """Optionally an earlier champion to go back to (default: the one before the current), and why."""

    model_config = Strict

    version: Version | None = None
    note: ModelNote = ""


class ChampionCall(BaseModel):
    """What training is sent (its ChampionRequest): the operator is the key, never the client's say."""

    version: int | None
    by: str
    note: str


def _champion_call(principal: Principal, body: PromoteBody | RollbackBody | None) -> bytes:
    version, note = (body.version, body.note) if body else (None, "")
    return ChampionCall(version=version, by=principal.name, note=note).model_dump_json().encode()


def _reading_batch_schema() -> dict[str, Any]:
    item = Reading.model_json_schema()
    return {
        "anyOf": [
            {
                "type": "object",
                "properties": {"readings": {"type": "array", "items": item, "maxItems": MAX_BATCH_READINGS}},
                "required": ["readings"],
                "additionalProperties": False,
            },
            {"type": "array", "items": item, "maxItems": MAX_BATCH_READINGS},
        ]
    }


def _json_body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


# ---------------------------------------------------------------------- readings and equipment events
@router.post(
    "/readings",
    response_model=IngestResult,
    **_route(
        "ingest",
        "Send readings (ingestion)",
        body=True,
        description='A batch (`{"readings": [...]}` or a bare list, at most 5,000), validated reading by '
        "reading by ingestion: 200 with per-reading rejections, 422 when every reading is bad, 503 with "
        "Retry-After when none could be applied for a passing reason.",
        openapi_extra=_json_body(_reading_batch_schema()),
        responses={
            422: _service_answer("Every reading rejected (ingestion's IngestResult), or no batch."),
            503: _service_answer(
                "No reading could be applied for a passing reason (IngestResult), or a "
                "service is away; send again after Retry-After."
            )
            | {"headers": _RETRY_AFTER},
            429: _NEW_ID_QUOTA,
        },
    ),
)
async def post_readings(
    request: Request, principal: Annotated[Principal, Depends(needs("ingest"))]
) -> Response:
    gateway, body = _gateway(request), await request.body()
    await gateway.admit_new_ids(principal, equipment_ids(body), _ctx())
    timeout = gateway.settings.readings_timeout_seconds
    return await _pass(request, INGESTION_APP_ID, "v1/readings", verb="POST", body=body, timeout=timeout)


@router.post(
    "/equipment/{equipment_id}/events",
    status_code=201,
    response_model=EquipmentEvent,
    dependencies=[Depends(small_body)],
    **_route(
        "operate",
        "Record a failure, maintenance or replacement (ingestion)",
        body=True,
        description="The labels training learns from; kept in the archive.",
        openapi_extra=_json_body(EquipmentEventRequest.model_json_schema()),
        responses={
            409: _service_answer("No seq given and the machine has sent no reading."),
            422: _service_answer("A field is wrong (ingestion names it)."),
            429: _NEW_ID_QUOTA,
        },
    ),
)
async def post_event(
    request: Request,
    equipment_id: EquipmentIdPath,
    principal: Annotated[Principal, Depends(needs("operate"))],
) -> Response:
    # An event for a machine never seen makes its archive folder: counted like a new machine's readings.
    await _gateway(request).admit_new_ids(principal, {equipment_id}, _ctx())
    path = f"v1/equipment/{equipment_id}/events"
    return await _pass(request, INGESTION_APP_ID, path, verb="POST", body=await request.body())


@router.get(
    "/equipment/{equipment_id}/events",
    response_model=list[EquipmentEvent],
    **_route("read", "A machine's events, oldest seq first (ingestion)"),
)
async def list_events(
    request: Request, equipment_id: EquipmentIdPath, _: Annotated[Principal, Depends(needs("read"))]
) -> Response:
    return await _pass(request, INGESTION_APP_ID, f"v1/equipment/{equipment_id}/events")


@router.get(
    "/profiles",
    response_model=list[ProfileSpec],
    **_route("read", "The equipment profiles readings are checked against (ingestion)"),
)
async def profiles(request: Request, _: Annotated[Principal, Depends(needs("read"))]) -> Response:
    return await _pass(request, INGESTION_APP_ID, "v1/profiles")


# ---------------------------------------------------------------------- fleet, machines, alerts
@router.get("/fleet", **_route("read", "Every machine's latest health and the counts per status (alerting)"))
async def fleet(
    request: Request, _: Annotated[Principal, Depends(needs("read"))], status: Status | None = None
) -> Response:
    return await _pass(request, ALERTING_APP_ID, "v1/fleet", query=[("status", status)])


@router.delete(
    "/fleet/{equipment_id}",
    dependencies=[Depends(small_body)],
    **_route(
        "operate",
        "Retire a machine (alerting and its actor)",
        body=True,
        description="It is no longer watched and leaves the fleet view until it sends readings again.",
        responses={404: _service_answer("Unknown machine.")},
    ),
)
async def retire(
    request: Request,
    equipment_id: EquipmentIdPath,
    principal: Annotated[Principal, Depends(needs("operate"))],
    body: Annotated[NoteBody | None, Body()] = None,
) -> Response:
    payload = _operator(principal, body)
    return await _pass(request, ALERTING_APP_ID, f"v1/fleet/{equipment_id}", verb="DELETE", body=payload)


@router.get(
    "/machines/{equipment_id}",
    response_model=MachineView,
    **_route(
        "read",
        "One machine: health, prediction history, alerts and model card in one answer",
        description="The actor's health is required (404 for a machine that never sent a reading); a part "
        "whose service does not answer is null and named in `unavailable`.",
        responses={404: _error("The machine has sent no readings.")},
    ),
)
async def machine(
    request: Request, equipment_id: EquipmentIdPath, _: Annotated[Principal, Depends(needs("read"))]
) -> MachineView:
    return await _gateway(request).machine(equipment_id, _ctx())


@router.get(
    "/alerts",
    **_route("read", "Alerts, newest raised first, with filters (alerting)"),
)
async def alerts(
    request: Request,
    _: Annotated[Principal, Depends(needs("read"))],
    equipment_id: Annotated[str | None, Query(pattern=EQUIPMENT_ID_PATTERN)] = None,
    state: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$")] = None,
    kind: AlertKind | None = None,
    severity: Severity | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> Response:
    query = [
        ("equipment_id", equipment_id),
        ("state", state),
        ("kind", kind),
        ("severity", severity),
        ("limit", limit),
    ]
    return await _pass(request, ALERTING_APP_ID, "v1/alerts", query=query)


@router.get(
    "/alerts/{alert_id}",
    **_route(
        "read", "One alert with its history (alerting)", responses={404: _service_answer("Unknown alert.")}
    ),
)
async def alert(
    request: Request, alert_id: AlertIdPath, _: Annotated[Principal, Depends(needs("read"))]
) -> Response:
    return await _pass(request, ALERTING_APP_ID, f"v1/alerts/{alert_id}")


def _operator_route(action: str, summary: str) -> dict[str, Any]:
    return _route(
        "operate",
        summary,
        body=True,
        description=f"Recorded as {action} by the API key's name, with the note.",
        responses={
            404: _service_answer("Unknown alert."),
            409: _service_answer("The alert is cleared or resolved (alerting says by whom and when)."),
        },
    )


@router.post(
    "/alerts/{alert_id}/ack",
    dependencies=[Depends(small_body)],
    **_operator_route("acknowledged", "Acknowledge an alert (alerting)"),
)
async def acknowledge(
    request: Request,
    alert_id: AlertIdPath,
    principal: Annotated[Principal, Depends(needs("operate"))],
    body: Annotated[NoteBody | None, Body()] = None,
) -> Response:
    path = f"v1/alerts/{alert_id}/ack"
    return await _pass(request, ALERTING_APP_ID, path, verb="POST", body=_operator(principal, body))


@router.post(
    "/alerts/{alert_id}/resolve",
    dependencies=[Depends(small_body)],
    **_operator_route("resolved", "Resolve an alert the machine has not cleared (alerting and its actor)"),
)
async def resolve(
    request: Request,
    alert_id: AlertIdPath,
    principal: Annotated[Principal, Depends(needs("operate"))],
    body: Annotated[NoteBody | None, Body()] = None,
) -> Response:
    path = f"v1/alerts/{alert_id}/resolve"
    return await _pass(request, ALERTING_APP_ID, path, verb="POST", body=_operator(principal, body))


@router.get("/dead-letters", **_route("read", "Readings and messages refused, newest first (alerting)"))
async def dead_letters(
    request: Request,
    _: Annotated[Principal, Depends(needs("read"))],
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
) -> Response:
    return await _pass(request, ALERTING_APP_ID, "v1/dead-letters", query=[("limit", limit)])


@router.get("/notifications", **_route("read", "Whether alert notifications are delivered (alerting)"))
async def notifications(request: Request, _: Annotated[Principal, Depends(needs("read"))]) -> Response:
    return await _pass(request, ALERTING_APP_ID, "v1/notifications")


# ---------------------------------------------------------------------- models and training
@router.get(
    "/models",
    response_model=list[RegisteredModel],
    **_route("read", "The model registry: versions, model cards, champion (training)"),
)
async def models(request: Request, _: Annotated[Principal, Depends(needs("read"))]) -> Response:
    return await _pass(request, TRAINING_APP_ID, "v1/models")


@router.get(
    "/models/serving",
    response_model=dict[str, int],
    **_route("read", "The model versions inference serves, by model name (inference)"),
)
async def serving(request: Request, _: Annotated[Principal, Depends(needs("read"))]) -> Response:
    return await _pass(request, INFERENCE_APP_ID, "v1/models")


ModelNamePath = Annotated[str, Path(pattern=MODEL_NAME_PATTERN, examples=["turbofan-rul"])]


@router.get(
    "/models/{name}",
    **_route(
        "read",
        "One model: versions, champion, gate decisions, champion history, drift (training)",
        description="Every version's model card, the champion, the promotion gate's decision on each "
        "version with both models' numbers, every change of champion (gate, promote, rollback: who, when, "
        "why) and the champion's feature drift as last measured (over what inference predicted, or the "
        "archive's readings: `source`).",
        responses={404: _service_answer("Unknown model.")},
    ),
)
async def model(
    request: Request, name: ModelNamePath, _: Annotated[Principal, Depends(needs("read"))]
) -> Response:
    return await _pass(request, TRAINING_APP_ID, f"v1/models/{name}")


def _champion_route(summary: str, description: str) -> dict[str, Any]:
    return _route(
        "operate",
        summary,
        body=True,
        description=f"{description} Recorded in the champion history under the API key's name, with the "
        "note; inference swaps to it at once (`model-updates`).",
        responses={
            404: _service_answer("Unknown model or version."),
            409: _service_answer(
                "Already the champion, nothing to roll back to, or the version was never champion."
            ),
        },
    )


@router.post(
    "/models/{name}/promote",
    dependencies=[Depends(small_body)],
    **_champion_route("Make a version champion (training)", "Whatever the promotion gate said."),
)
async def promote(
    request: Request,
    name: ModelNamePath,
    body: PromoteBody,
    principal: Annotated[Principal, Depends(needs("operate"))],
) -> Response:
    payload = _champion_call(principal, body)
    return await _pass(request, TRAINING_APP_ID, f"v1/models/{name}/promote", verb="POST", body=payload)


@router.post(
    "/models/{name}/rollback",
    dependencies=[Depends(small_body)],
    **_champion_route(
        "Go back to an earlier champion (training)",
        "No body or no `version`: the champion before the current one; a `version` must have been champion.",
    ),
)
async def rollback(
    request: Request,
    name: ModelNamePath,
    principal: Annotated[Principal, Depends(needs("operate"))],
    body: Annotated[RollbackBody | None, Body()] = None,
) -> Response:
    payload = _champion_call(principal, body)
    return await _pass(request, TRAINING_APP_ID, f"v1/models/{name}/rollback", verb="POST", body=payload)


@router.post(
    "/training-jobs",
    status_code=202,
    dependencies=[Depends(small_body)],
    **_route(
        "admin",
        "Start a training job (training)",
        body=True,
        description="Trains (from the archive's labelled runs, or a shipped dataset), registers the version "
        "and promotes it if it beats the champion; stops as `no_new_data` when there is nothing new.",
    ),
)
async def train(
    request: Request,
    _: Annotated[Principal, Depends(needs("admin"))],
    body: Annotated[TrainRequest | None, Body()] = None,
) -> Response:
    # checked here as training checks it (the same contract), passed on with only the fields given
    sent = b"" if body is None else body.model_dump_json(exclude_unset=True).encode()
    return await _pass(request, TRAINING_APP_ID, "v1/train", verb="POST", body=sent)


@router.get(
    "/training-jobs",
    **_route(
        "read",
        "Training jobs, newest first, across restarts of training (training)",
        description="The state store keeps the newest jobs (training's `VIGIL_TRAINING_JOBS_KEPT`); a job "
        "a restart of training interrupted is `failed` and says so.",
    ),
)
async def jobs(
    request: Request,
    _: Annotated[Principal, Depends(needs("read"))],
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> Response:
    return await _pass(request, TRAINING_APP_ID, "v1/jobs", query=[("limit", limit)])


@router.get(
    "/training-jobs/{job_id}",
    **_route(
        "read",
        "A training job's progress and result (training)",
        responses={404: _service_answer("Unknown job.")},
    ),
)
async def job(
    request: Request,
    job_id: Annotated[str, Path(pattern=JOB_ID_PATTERN)],
    _: Annotated[Principal, Depends(needs("read"))],
) -> Response:
    return await _pass(request, TRAINING_APP_ID, f"v1/jobs/{job_id}")


# ---------------------------------------------------------------------- archive
@router.get("/archive/backlog", **_route("read", "Readings staged and not yet archived (archiver)"))
async def backlog(request: Request, _: Annotated[Principal, Depends(needs("read"))]) -> Response:
    return await _pass(request, ARCHIVER_APP_ID, "v1/archive/backlog")


@router.post(
    "/archive/flush",
    dependencies=[Depends(small_body)],
    **_route("admin", "Write everything staged to the archive now (archiver)", body=True),
)
async def flush(
    request: Request,
    _: Annotated[Principal, Depends(needs("admin"))],
    body: Annotated[EmptyBody | None, Body()] = None,
) -> Response:
    return await _pass(request, ARCHIVER_APP_ID, "v1/archive/flush", verb="POST")


# ---------------------------------------------------------------------- keys
@router.get("/whoami", response_model=Me, **_route(None, "The calling key's name and scopes", service=False))
async def whoami(principal: Annotated[Principal, Depends(needs(None))]) -> Me:
    return Me(key_id=principal.key_id, name=principal.name, scopes=sorted(principal.scopes))


@router.get(
    "/keys", response_model=list[KeyInfo], **_route("admin", "Every API key (never the keys themselves)")
)
async def list_keys(request: Request, _: Annotated[Principal, Depends(needs("admin"))]) -> list[KeyInfo]:
    return [KeyInfo.of(r) for r in await _gateway(request).list_keys()]


@router.post(
    "/keys",
    status_code=201,
    response_model=NewKey,
    dependencies=[Depends(small_body)],
    **_route(
        "admin",
        "Create an API key: the answer shows it once",
        body=True,
        service=False,
    ),
)
async def create_key(
    request: Request, body: KeyRequest, _: Annotated[Principal, Depends(needs("admin"))]
) -> NewKey:
    key, record = await _gateway(request).create_key(body.name, body.scopes)
    return NewKey(key=key, info=KeyInfo.of(record))


@router.delete(
    "/keys/{key_id}",
    response_model=KeyInfo,
    **_route(
        "admin",
        "Revoke an API key",
        service=False,
        responses={404: _error("Unknown key id.")},
    ),
)
async def revoke_key(
    request: Request,
    key_id: Annotated[str, Path(pattern=KEY_ID_PATTERN)],
    _: Annotated[Principal, Depends(needs("admin"))],
) -> KeyInfo:
    return KeyInfo.of(await _gateway(request).revoke_key(key_id))
