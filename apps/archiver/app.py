"""HTTP and Dapr wiring of the archiver service; the logic is in service.py, the staging area in store.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Request
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, ValidationError

from apps.archiver.service import ArchiverService
from apps.archiver.settings import get_settings
from apps.archiver.store import DaprStagingStore
from apps.common.apptoken import AppTokenGuard
from apps.common.archivestore import DaprArchive
from apps.common.bulksub import BulkDaprApp, bulk_answer, bulk_entries
from apps.common.contracts import ReadingBatch
from apps.common.gctuning import tune_garbage_collector
from apps.common.httpguard import RequestGuard
from apps.common.metrics import instrument
from apps.common.names import PUBSUB, TOPIC_READINGS_ACCEPTED
from apps.common.nativetelemetry import TELEMETRY_OFF
from apps.common.tracecontext import dapr_client

logging.basicConfig(level=logging.INFO, format="%(message)s")
log = logging.getLogger("archiver")


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with dapr_client() as client:
        service = ArchiverService(DaprStagingStore(client), DaprArchive(client), get_settings())
        app.state.service = service
        flusher = asyncio.create_task(service.run_flusher())
        try:
            tune_garbage_collector()  # the app is up: what it holds now stays (gctuning.py)
            yield
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher


app = FastAPIOffline(telemetry=TELEMETRY_OFF, title="Vigil archiver", lifespan=lifespan)
app.add_middleware(RequestGuard)
app.add_middleware(AppTokenGuard)  # outside RequestGuard: refused before any parsing
instrument(app)  # added last: outermost, every answer counted
dapr_app = BulkDaprApp(app)


def get_service(request: Request) -> ArchiverService:
    return request.app.state.service  # type: ignore[no-any-return]


ServiceDep = Annotated[ArchiverService, Depends(get_service)]


async def on_readings_accepted(request: Request) -> dict[str, object]:
    """Each message acked (SUCCESS) only once staged: a failure asks the broker to deliver it again
    (RETRY). Messages come in bulk (bulkSubscribe: one POST per batch, each entry answered); a single
    CloudEvent (a sidecar without bulk subscribe) is answered as one."""
    body = await request.body()
    service = get_service(request)
    entries = bulk_entries(body, request.headers.get("content-type", ""))
    if entries is None:
        try:
            event = json.loads(body)
        except ValueError:
            event = None
        return {"status": await _stage(service, event)}
    statuses = await asyncio.gather(*(_stage(service, entry.event) for entry in entries))
    return bulk_answer([(entry.entry_id, status) for entry, status in zip(entries, statuses, strict=True)])


async def _stage(service: ArchiverService, event: Any) -> str:
    event_id = event.get("id") if isinstance(event, dict) else None
    try:
        if not isinstance(event, dict):
            raise ValueError("not a CloudEvent object")
        batch = ReadingBatch.model_validate(event.get("data"))
    except (ValidationError, ValueError) as exc:
        log.warning("malformed readings-accepted message %s dropped: %s", event_id, exc)
        return "DROP"  # it can never pass; ingestion only publishes validated readings
    try:
        await service.stage(str(event_id), batch.readings)
    except Exception as exc:
        log.warning("could not stage message %s, the broker will redeliver it: %s", event_id, exc)
        return "RETRY"
    return "SUCCESS"


def _bulk_limits() -> tuple[int, int]:
    settings = get_settings()
    return settings.bulk_max_messages, settings.bulk_max_await_ms


dapr_app.bulk_subscribe(pubsub=PUBSUB, topic=TOPIC_READINGS_ACCEPTED, limits=_bulk_limits)(
    on_readings_accepted
)


@app.get("/v1/archive/backlog")
async def backlog(service: ServiceDep) -> dict[str, Any]:
    """Readings staged but not yet in the archive (written when the oldest is `max_delay_seconds` old
    or the stage holds `flush_readings`)."""
    found = await service.backlog()
    return {"messages": found.messages, "readings": found.readings, "oldest_seconds": found.oldest_seconds}


class FlushRequest(BaseModel):
    """No options: an empty object or no body; anything else is a 422 (never ignored)."""

    model_config = ConfigDict(extra="forbid")


@app.post("/v1/archive/flush")
async def flush(service: ServiceDep, body: Annotated[FlushRequest | None, Body()] = None) -> dict[str, int]:
    """Write everything staged now (before a training run, or a planned shutdown)."""
    return {"archived": await service.flush(force=True)}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
