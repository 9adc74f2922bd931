"""HTTP and Dapr wiring of the training service; the job itself is in service.py and trainer.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from apps.common.apptoken import AppTokenGuard
from apps.common.archivestore import DaprArchive
from apps.common.gctuning import tune_garbage_collector
from apps.common.httpguard import RequestGuard
from apps.common.metrics import instrument
from apps.common.names import RETRAIN_SCHEDULE_BINDING
from apps.common.nativetelemetry import TELEMETRY_OFF
from apps.common.profiles import PROFILES, get_profile
from apps.common.publisher import DaprPublisher
from apps.common.registry import DaprModelRegistry, DriftReport, RegisteredModel
from apps.common.signing import load_signer
from apps.common.tracecontext import dapr_client
from apps.training.champions import (
    ChampionChange,
    ChampionConflict,
    ChampionRequest,
    ModelCatalog,
    ModelView,
    UnknownModel,
)
from apps.training.inputs import DaprInferenceInputs
from apps.training.jobs import JobSummary, TrainingJob, TrainRequest
from apps.training.jobstore import DaprJobStore, JobBook, JobStoreUnavailable
from apps.training.leases import ClaimUnavailable, DaprClaimStore
from apps.training.promotion import GateResult
from apps.training.schedule import RetrainSchedule, SchedulePolicy
from apps.training.service import NoNewData, TrainingService
from apps.training.settings import get_settings

logging.basicConfig(level=logging.INFO, format="%(message)s")
log = logging.getLogger("training")


async def start_claimed(app: FastAPI, job: TrainingJob) -> str | None:
    """Start an automated job (schedule, drift, start-up) once this replica holds its profile's claim
    (leases.py): None when started, else why not (another replica runs one, or the store is away)."""
    profile = job.request.profile or app.state.service.profile.name
    try:
        holder = await app.state.book.claim(job, profile)
    except ClaimUnavailable as exc:
        return f"not started: {exc}"
    if holder is not None:
        return f"a {profile} job ({holder.job}) runs on training replica {holder.owner}"
    start_job(app, job)
    return None


async def sweep_forever(book: JobBook, seconds: float) -> None:
    """Fail the jobs whose replica stopped renewing their lease (jobstore.JobBook.sweep)."""
    while True:
        await asyncio.sleep(seconds)
        try:
            for job in await book.sweep():
                log.warning("training job %s: %s", job.id, job.error)
        except JobStoreUnavailable as exc:
            log.warning("jobs not swept: %s", exc)


def start_job(app: FastAPI, job: TrainingJob) -> None:
    """Run `job` in the background; the app keeps its task until it is done."""
    service: TrainingService = app.state.service
    service.jobs[job.id] = job  # visible at once, queued behind a running job
    task = asyncio.create_task(service.run(job))
    app.state.tasks.add(task)
    task.add_done_callback(app.state.tasks.discard)
    app.state.book.follow(job, task)  # its record in the state store, kept up to date


def _signing_key() -> str | None:
    configured = get_settings().signing_key
    return configured.get_secret_value() if configured else None


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    app.state.tasks = set()
    async with dapr_client() as client:
        # Signed records: inference serves only what training's key signed (apps/common/signing.py).
        registry = DaprModelRegistry(client, signer=await load_signer(client, _signing_key()))
        publisher = DaprPublisher(client)
        profile = get_profile(settings.profile)
        service = TrainingService(
            registry,
            publisher,
            profile,
            {"n_estimators": settings.n_estimators, "n_seeds": settings.n_seeds},
            margin=settings.promotion_margin,
            archive=DaprArchive(client),
            kind_params={
                "failure": {"n_estimators": settings.failure_n_estimators},
                "anomaly": {"n_estimators": settings.anomaly_n_estimators},
            },
        )
        inputs = DaprInferenceInputs()
        catalog = ModelCatalog(
            registry,
            publisher,
            {p.model_name: p for p in PROFILES.values()},
            inputs=inputs,
            min_inference_rows=settings.drift_min_inference_rows,
        )
        policy = SchedulePolicy(
            settings.retrain_min_new_runs,
            settings.drift_recent_readings,
            settings.drift_retrain_psi,
            min_new_failures=settings.retrain_min_new_failures,
            min_new_lives=settings.retrain_min_new_lives,
        )
        # every profile's model, the configured one's first (its job queues first)
        considered = [profile, *(p for _, p in sorted(PROFILES.items()) if p.name != profile.name)]
        app.state.service, app.state.catalog = service, catalog
        store = DaprJobStore(client, keep=settings.jobs_kept)
        lease = settings.job_lease_seconds
        app.state.book = JobBook(
            service.jobs,
            store,
            settings.jobs_kept,
            settings.job_save_seconds,
            owner=settings.replica_id,
            lease_seconds=lease,
            claims=DaprClaimStore(client, lease),
        )
        for job in await app.state.book.recover():
            log.warning("training job %s: %s", job.id, job.error)
        sweeper = asyncio.create_task(sweep_forever(app.state.book, lease / 2))
        app.state.schedule = RetrainSchedule(
            service, catalog, considered, policy, lambda j: start_claimed(app, j)
        )
        if settings.train_if_no_champion and not await service.has_champion():
            # a fresh platform has no history yet: the first model learns from the shipped FD001 file
            unsigned = await registry.champion_version(profile.model_name) is not None
            if unsigned and registry.signer is not None:
                # A champion inference refuses (from before signing, or forged): replace it whatever
                # the gate would say, or nothing is served.
                log.warning("the champion of %s is not signed with this key: retraining", profile.model_name)
            else:
                log.info("no champion model yet: training a first one")
            request = TrainRequest(source="dataset", force=unsigned and registry.signer is not None)
            refused = await start_claimed(app, TrainingJob(trigger="startup", request=request))
            if refused:
                log.info("no start-up job: %s", refused)
        tune_garbage_collector()  # the app is up: what it holds now stays (gctuning.py)
        yield
        sweeper.cancel()
        for task in app.state.tasks:
            task.cancel()
        await app.state.book.close()
        await inputs.close()


app = FastAPIOffline(telemetry=TELEMETRY_OFF, title="Vigil training", lifespan=lifespan)
app.add_middleware(RequestGuard)
app.add_middleware(AppTokenGuard)  # outside RequestGuard: refused before any parsing
instrument(app)  # added last: outermost, every answer counted


def get_service(request: Request) -> TrainingService:
    return request.app.state.service  # type: ignore[no-any-return]


def get_catalog(request: Request) -> ModelCatalog:
    return request.app.state.catalog  # type: ignore[no-any-return]


def get_book(request: Request) -> JobBook:
    return request.app.state.book  # type: ignore[no-any-return]


ServiceDep = Annotated[TrainingService, Depends(get_service)]
BookDep = Annotated[JobBook, Depends(get_book)]
CatalogDep = Annotated[ModelCatalog, Depends(get_catalog)]
ModelName = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]


def job_json(job: TrainingJob) -> dict[str, Any]:
    return job.model_dump(mode="json")


@app.post("/v1/train", status_code=202, responses={422: {"description": "An unknown field or value."}})
async def train(request: Request, body: Annotated[TrainRequest | None, Body()] = None) -> JSONResponse:
    """Start a training job: 202 with the job, `Location: /v1/jobs/{id}`. No body or `{}`: the configured
    profile from the archive. A job that finds no labelled run the champion has not seen stops as
    `no_new_data` (unless `force`)."""
    job = TrainingJob(request=body or TrainRequest())
    get_book(request).adopt(job)
    # In the store before it starts (the job's own writes then follow this one, never race it): a job
    # answered 202 survives a restart from now on.
    await get_book(request).save(job)
    start_job(request.app, job)
    return JSONResponse(job_json(job), 202, headers={"Location": f"/v1/jobs/{job.id}"})


_JOB_ERRORS: dict[int | str, dict[str, Any]] = {503: {"description": "The job store is unavailable."}}
JobId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]


@app.get(
    "/v1/jobs/{job_id}",
    response_model=TrainingJob,
    responses={404: {"description": "Unknown job."}} | _JOB_ERRORS,
)
async def get_job(job_id: JobId, book: BookDep) -> TrainingJob:
    """A job's status (`queued`, `running`, `succeeded`, `failed`, `no_new_data`), stage and progress,
    the runs it found, and once done its model card and the promotion gate's decision. Jobs are kept in
    the state store: one from before a restart is here too (failed if the restart interrupted it)."""
    try:
        job = await book.get(job_id)
    except JobStoreUnavailable as exc:
        raise HTTPException(503, str(exc)) from None
    if job is None:
        raise HTTPException(404, f"no training job {job_id!r} (only the newest {book.keep} are kept)")
    return job


@app.get("/v1/jobs", response_model=list[JobSummary], responses=_JOB_ERRORS)
async def list_jobs(
    book: BookDep, limit: Annotated[int, Query(ge=1, le=10_000, description="At most this many.")] = 100
) -> list[JobSummary]:
    """The newest jobs first, across restarts (the state store keeps the newest `jobs_kept`), each
    without its model card (`version` and `metrics` stand for it; `GET /v1/jobs/{id}` has it)."""
    try:
        return [JobSummary.of(job) for job in await book.newest(min(limit, book.keep))]
    except JobStoreUnavailable as exc:
        raise HTTPException(503, str(exc)) from None


@app.get("/v1/models", response_model=list[RegisteredModel])
async def models(service: ServiceDep) -> list[RegisteredModel]:
    """Every model of the registry (one per equipment profile): its versions' model cards, oldest
    first, and which version is champion (the one inference serves)."""
    return await service.models(sorted({p.model_name for p in PROFILES.values()}))


def _refused(exc: Exception) -> HTTPException:
    return HTTPException(404 if isinstance(exc, UnknownModel) else 409, str(exc))


@app.get("/v1/models/{name}", response_model=ModelView, responses={404: {"description": "Unknown model."}})
async def model(name: ModelName, catalog: CatalogDep) -> ModelView:
    """One model: versions, champion, the gate's decisions with their numbers, every change of
    champion, and the champion's feature drift as last measured."""
    try:
        return await catalog.view(name)
    except UnknownModel as exc:
        raise _refused(exc) from None


@app.get("/v1/models/{name}/decisions", response_model=list[GateResult])
async def decisions(name: ModelName, catalog: CatalogDep) -> list[GateResult]:
    """The promotion gate's decision on each version, oldest first, with both models' numbers."""
    try:
        return (await catalog.view(name)).decisions
    except UnknownModel as exc:
        raise _refused(exc) from None


_CHANGE_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"description": "Unknown model or version."},
    409: {"description": "Already champion, or nothing to roll back to."},
}


@app.post("/v1/models/{name}/promote", response_model=ChampionChange, responses=_CHANGE_ERRORS)
async def promote(name: ModelName, body: ChampionRequest, catalog: CatalogDep) -> ChampionChange:
    """Make a version champion whatever the gate said (inference swaps to it on `model-updates`)."""
    try:
        return await catalog.promote(name, body)
    except (UnknownModel, ChampionConflict) as exc:
        raise _refused(exc) from None


@app.post("/v1/models/{name}/rollback", response_model=ChampionChange, responses=_CHANGE_ERRORS)
async def rollback(
    name: ModelName, catalog: CatalogDep, body: Annotated[ChampionRequest | None, Body()] = None
) -> ChampionChange:
    """Back to the champion before the current one (or to `version`, an earlier champion)."""
    try:
        return await catalog.rollback(name, body or ChampionRequest())
    except (UnknownModel, ChampionConflict) as exc:
        raise _refused(exc) from None


@app.post("/v1/models/{name}/drift", response_model=DriftReport, responses=_CHANGE_ERRORS)
async def measure_drift(name: ModelName, service: ServiceDep, catalog: CatalogDep) -> DriftReport:
    """Measure the champion's feature drift now (a schedule fire does it too) and keep it: over what
    inference fed it, or (`fallback` says why) over the archive's recent readings."""
    try:
        return await catalog.compute_drift(name, service.read_lives, get_settings().drift_recent_readings)
    except (UnknownModel, ChampionConflict, NoNewData) as exc:
        raise _refused(exc) from None


@app.post(f"/{RETRAIN_SCHEDULE_BINDING}")
async def retrain_schedule(request: Request) -> dict[str, Any]:
    """A fire of the `retrain-schedule` input binding (bindings.cron): for each profile's model, start
    a job if enough new data of its kind arrived (or drift is high and some did), measure drift."""
    outcome = await request.app.state.schedule.tick()
    log.info("retrain schedule: %s", outcome)
    return outcome  # type: ignore[no-any-return]


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
