"""HTTP and Dapr wiring of the inference service; the logic is in service.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from dapr.ext.fastapi import DaprApp
from fastapi import Body, Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from apps.common.apptoken import AppTokenGuard
from apps.common.contracts import ModelCard, PredictRequest, PredictResponse
from apps.common.fastroute import PostShortcut
from apps.common.gctuning import tune_garbage_collector
from apps.common.httpguard import RequestGuard, error_responses, validation_error, validation_response
from apps.common.metrics import instrument
from apps.common.names import PUBSUB, SECRET_STORE, TOPIC_MODEL_UPDATES
from apps.common.nativetelemetry import TELEMETRY_OFF
from apps.common.registry import DaprModelRegistry, InputCounts, ModelUpdate
from apps.common.signing import PUBLIC_KEY_SECRET, BadKey, RecordVerifier, read_key
from apps.common.tracecontext import dapr_client
from apps.inference.inputstore import DaprInputStore
from apps.inference.model import BadInput, ModelChanged, ModelNotReady
from apps.inference.service import InferenceService, InputsUnavailable, NoReference
from apps.inference.settings import get_settings

log = logging.getLogger("inference")


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    async with dapr_client() as client:
        verifier, unverifiable = None, None
        key = settings.verify_key or await read_key(client, SECRET_STORE, PUBLIC_KEY_SECRET)
        try:
            verifier = RecordVerifier(key) if key else None
        except BadKey as exc:
            unverifiable = str(exc)
        if verifier is None:
            # Fail closed: without the public key no record can be told from a forged one.
            unverifiable = unverifiable or (
                f"no model-signing public key (VIGIL_INFERENCE_VERIFY_KEY or {PUBLIC_KEY_SECRET} in the "
                f"{SECRET_STORE} secret store): serving no model"
            )
            log.error("%s", unverifiable)
        service = InferenceService(
            DaprModelRegistry(client, verifier=verifier),
            settings,
            unverifiable,
            input_store=DaprInputStore(client),
        )
        app.state.service = service
        await service.refresh_all()
        if not service.ready:
            log.warning("no champion model yet for %s: train one with `vigil train`", settings.model_names)
        poller = asyncio.create_task(service.poll_forever())
        flusher = asyncio.create_task(service.flush_forever())
        tune_garbage_collector()  # the app is up: what it holds now stays (gctuning.py)
        yield
        poller.cancel()
        flusher.cancel()
        await service.close()


PREDICT_PATH = "/v1/predict"

app = FastAPIOffline(telemetry=TELEMETRY_OFF, title="Vigil inference", lifespan=lifespan)
# Innermost: predictions skip FastAPI's routing (apps/common/fastroute.py), after every check below; the
# lambda because answer_predict is defined further down.
app.add_middleware(PostShortcut, path=PREDICT_PATH, answer=lambda app_, body: answer_predict(app_, body))
# A prediction's rows are refused when not finite by PredictRequest itself (a 422 naming rows[i][j]):
# RequestGuard need not decode every body once more to look for a NaN or a 1e400 first.
app.add_middleware(RequestGuard, numbers_checked_per_item=(PREDICT_PATH,))
# A batch of rows can be too big for RequestGuard to look for a 1e400 in it: its 422 must still render.
app.add_exception_handler(RequestValidationError, validation_error)
app.add_middleware(AppTokenGuard)  # outside RequestGuard: refused before any parsing
instrument(app)  # added last: outermost, every answer counted
dapr_app = DaprApp(app)


def _service_of(app_: FastAPI) -> InferenceService:
    return app_.state.service  # type: ignore[no-any-return]


async def get_service(request: Request) -> InferenceService:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop per request.
    return _service_of(request.app)


ServiceDep = Annotated[InferenceService, Depends(get_service)]


# The service's refusals, each with its status: through exception handlers for the routes, and caught by
# answer_predict (which PostShortcut calls outside FastAPI's exception handling).
_REFUSAL_STATUS: dict[type[Exception], int] = {ModelNotReady: 503, BadInput: 422, ModelChanged: 409}
REFUSALS = tuple(_REFUSAL_STATUS)


def _refused(exc: Exception) -> JSONResponse:
    status = next(status for kind, status in _REFUSAL_STATUS.items() if isinstance(exc, kind))
    return JSONResponse({"detail": str(exc)}, status_code=status)


async def _refusal(request: Request, exc: Exception) -> JSONResponse:
    return _refused(exc)


for _refusal_type in REFUSALS:
    app.add_exception_handler(_refusal_type, _refusal)


# The body as FastAPI would take it (`body: PredictRequest`), for /docs and OpenAPI; the route reads it
# itself: FastAPI decodes a body with the standard library's json into lists of floats and validates
# those, which took half of this app's CPU per prediction in the pipeline bench (a request carries a few
# machines' rows of ~85 full-precision floats). pydantic's own JSON parser validates the bytes in one pass.
_PREDICT_BODY = {
    "required": True,
    "content": {"application/json": {"schema": PredictRequest.model_json_schema()}},
}


def _body_error(error: ErrorDetails) -> dict[str, Any]:
    """A pydantic error as FastAPI reports one of a body: located under "body"; a body that is no JSON
    (its bytes, maybe not UTF-8, as the input) shown as FastAPI shows it, without them."""
    shown: dict[str, Any] = {**error, "loc": ("body", *error["loc"])}
    if isinstance(error["input"], bytes):
        shown["input"] = {}
    return shown


@app.post(
    PREDICT_PATH,
    response_model=PredictResponse,
    responses=error_responses(409, 422, 503),
    openapi_extra={"requestBody": _PREDICT_BODY},
)
async def predict(request: Request) -> Response:
    # Declared for /docs and OpenAPI; PostShortcut (apps/common/fastroute.py) answers requests first.
    status, content, headers = await answer_predict(request.app, await request.body())
    return Response(content, status, headers=headers, media_type="application/json")


async def answer_predict(app_: FastAPI, body: bytes) -> tuple[int, bytes, dict[str, str]]:
    """POST /v1/predict: (status, JSON body, headers), for the route and for PostShortcut. The answers
    are those FastAPI gave through this app's exception handlers: a body that fails PredictRequest is
    `validation_error`'s 422, a refusal of the service the JSONResponse of `_refused`."""
    service = _service_of(app_)  # first, as the route's dependency was solved before the body was read
    try:
        request = PredictRequest.model_validate_json(body)
    except ValidationError as exc:
        refused = validation_response([_body_error(e) for e in exc.errors(include_url=False)])
        return refused.status_code, bytes(refused.body), {}
    try:
        answer = await service.predict(request)
    except REFUSALS as exc:
        refused = _refused(exc)
        return refused.status_code, bytes(refused.body), {}
    # Written by pydantic's serializer: returning the model, FastAPI would validate it again first.
    return 200, answer.__pydantic_serializer__.to_json(answer), {}


@app.get("/v1/models")
async def models(service: ServiceDep) -> dict[str, int]:
    return service.loaded()


@app.get("/v1/models/{name}", response_model=ModelCard, responses=error_responses(404, 503))
async def model_card(name: str, service: ServiceDep) -> ModelCard:
    """The card of the version served: its `features` spec is how callers compute the rows."""
    if name not in service.settings.model_names:
        raise HTTPException(404, f"inference does not serve a model named {name!r}")
    return service.card(name)


@app.get("/v1/models/{name}/inputs", response_model=InputCounts, responses=error_responses(404, 503))
async def model_inputs(name: str, service: ServiceDep) -> InputCounts:
    """The rows predicted with the served version by every replica, counted per feature in its card's
    reference bins (no row is kept), over the current and the previous window: what training's drift
    measures."""
    if name not in service.settings.model_names:
        raise HTTPException(404, f"inference does not serve a model named {name!r}")
    try:
        return await service.inputs(name)
    except NoReference as exc:
        raise HTTPException(404, str(exc)) from None
    except InputsUnavailable as exc:
        raise HTTPException(503, str(exc)) from None


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/readyz")
async def readyz(service: ServiceDep) -> JSONResponse:
    body: dict[str, object] = {"ready": service.ready, "models": service.loaded()}
    if service.refused:
        body["refused"] = service.refused  # forged or unsigned registry records, not served
    if service.unverifiable:
        body["unverifiable"] = service.unverifiable
    return JSONResponse(body, status_code=200 if service.ready else 503)


async def on_model_update(request: Request, event: dict = Body(...)) -> dict[str, str]:
    try:
        update = ModelUpdate.model_validate(event.get("data") or {})
    except ValueError as exc:
        log.warning("malformed model-updates event dropped: %s", exc)
        return {"status": "DROP"}
    if update.promoted:
        await _service_of(request.app).refresh(update.name)
    return {"status": "SUCCESS"}


dapr_app.subscribe(pubsub=PUBSUB, topic=TOPIC_MODEL_UPDATES)(on_model_update)
