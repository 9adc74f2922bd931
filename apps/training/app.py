"""HTTP and Dapr wiring of the training service; the job itself is in service.py and trainer.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict

from apps.common.apptoken import AppTokenGuard
from apps.common.httpguard import RequestGuard
from apps.common.metrics import instrument
from apps.common.profiles import PROFILES, get_profile
from apps.common.publisher import DaprPublisher
from apps.common.registry import DaprModelRegistry, RegisteredModel
from apps.common.tracecontext import dapr_client
from apps.training.service import TrainingJob, TrainingService
from apps.training.settings import get_settings

logging.basicConfig(level=logging.INFO, format="%(message)s")
log = logging.getLogger("training")


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    tasks: set[asyncio.Task[Any]] = set()
    app.state.tasks = tasks
    async with dapr_client() as client:
        service = TrainingService(
            DaprModelRegistry(client),
            DaprPublisher(client),
            get_profile(settings.profile),
            {"n_estimators": settings.n_estimators},
        )
        app.state.service = service
        if settings.train_if_no_champion and not await service.has_champion():
            log.info("no champion model yet: training a first one")
            task = asyncio.create_task(service.run())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        yield
        for task in tasks:
            task.cancel()


app = FastAPIOffline(title="Vigil training", lifespan=lifespan)
app.add_middleware(RequestGuard)
app.add_middleware(AppTokenGuard)  # outside RequestGuard: refused before any parsing
instrument(app)  # added last: outermost, every answer counted


def get_service(request: Request) -> TrainingService:
    return request.app.state.service  # type: ignore[no-any-return]


ServiceDep = Annotated[TrainingService, Depends(get_service)]


def job_json(job: TrainingJob) -> dict[str, Any]:
    return {
        "id": job.id,
        "status": job.status,
        "stage": job.stage,
        "progress": round(job.progress, 3),
        "promoted": job.promoted,
        "gate": None if job.gate is None else job.gate.model_dump(mode="json"),
        "error": job.error,
        "card": None if job.card is None else job.card.model_dump(mode="json"),
    }


class TrainRequest(BaseModel):
    """No options yet: an empty object (or no body). Anything else is refused, so a request meant for
    another API or a typo never starts a training run."""

    model_config = ConfigDict(extra="forbid")


@app.post("/v1/train", status_code=202)
async def train(
    request: Request, service: ServiceDep, body: Annotated[TrainRequest | None, Body()] = None
) -> JSONResponse:
    """Start a training job: 202 with the job, `Location: /v1/jobs/{id}`; a body other than `{}` is a 422."""
    job = TrainingJob()
    task = asyncio.create_task(service.run(job))
    request.app.state.tasks.add(task)
    task.add_done_callback(request.app.state.tasks.discard)
    return JSONResponse(job_json(job), 202, headers={"Location": f"/v1/jobs/{job.id}"})


@app.get("/v1/jobs/{job_id}")
async def get_job(job_id: str, service: ServiceDep) -> dict[str, Any]:
    job = service.jobs.get(job_id)
    if job is None:
        raise HTTPException(404, f"no training job {job_id!r}")
    return job_json(job)


@app.get("/v1/models", response_model=list[RegisteredModel])
async def models(service: ServiceDep) -> list[RegisteredModel]:
    """Every model of the registry (one per equipment profile): its versions' model cards, oldest
    first, and which version is champion (the one inference serves)."""
    return await service.models(sorted({p.model_name for p in PROFILES.values()}))


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
