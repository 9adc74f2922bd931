"""The job log's rules without Dapr: a job the restart interrupted (no lease left) is failed saying
so, the index keeps the newest jobs, and the book writes a job when it starts, while it runs and when
it ends (a memory store in place of the state store; tests/integration/training/test_learning_loop.py
runs the real one)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from apps.common.contracts import ModelCard
from apps.training.jobs import JobSummary, TrainingJob, TrainRequest, interrupted, keep_newest
from apps.training.jobstore import JobBook, JobStoreUnavailable

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def referenced_card() -> ModelCard:
    digest = "0" * 64
    return ModelCard(
        name="turbofan-rul",
        version=3,
        created_at=NOW,
        profile="turbofan",
        feature_names=["a"],
        metrics={"rmse_capped": 12.5},
        training_data_fingerprint=digest,
        rul_cap=125.0,
        n_train_rows=10,
        n_train_units=2,
        onnx_sha256=digest,
    )


class MemoryJobStore:
    """JobStore over a dict, with the same index rule as DaprJobStore."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.records: dict[str, str] = {}
        self.index: list[str] = []
        self.failing = False
        self.writes = 0

    async def save(self, job_id: str, record: str) -> None:
        if self.failing:
            raise JobStoreUnavailable("the job store modelstore failed: down")
        self.writes += 1
        if job_id not in self.index:
            self.index, dropped = keep_newest(self.index, job_id, self.keep)
            for old in dropped:
                self.records.pop(old, None)
        self.records[job_id] = record

    async def ids(self) -> list[str]:
        return list(self.index)

    async def load(self, ids: list[str]) -> list[TrainingJob]:
        return [TrainingJob.model_validate_json(self.records[i]) for i in ids if i in self.records]

    async def update(self, job_id: str, change: Callable[[bytes | None], str | None]) -> bool:
        if self.failing:
            raise JobStoreUnavailable("the job store modelstore failed: down")
        stored = self.records.get(job_id)
        new = change(None if stored is None else stored.encode())
        if new is None:
            return False
        await self.save(job_id, new)
        return True

    def status(self, job_id: str) -> str | None:
        return (
            TrainingJob.model_validate_json(self.records[job_id]).status if job_id in self.records else None
        )


async def until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_a_running_or_queued_job_is_failed_by_a_restart_saying_so() -> None:
    running = TrainingJob(status="running", stage="boosting stage 70/200", progress=0.33)
    failed = interrupted(running, NOW)
    assert failed is not None and failed.status == "failed" and failed.finished_at == NOW
    assert failed.error is not None and "interrupted by a restart of the training app" in failed.error
    assert "'boosting stage 70/200'" in failed.error and failed.progress == 0.33 and failed.id == running.id
    queued = interrupted(TrainingJob(), NOW)
    assert queued is not None and "it was queued at its start" in (queued.error or "")
    for status in ("succeeded", "failed", "no_new_data"):
        assert interrupted(TrainingJob(status=status), NOW) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "request_",
    [
        TrainRequest(),
        TrainRequest(source="dataset", dataset="FD002", force=True, note="n"),
        TrainRequest(force=True),
    ],
)
def test_a_stored_record_reads_back_as_it_was(request_: TrainRequest) -> None:
    job = TrainingJob(request=request_, status="succeeded", message="done")
    assert TrainingJob.model_validate_json(job.model_dump_json()) == job


def test_a_listed_job_leaves_its_card_and_skipped_runs_out() -> None:
    card = referenced_card()
    job = TrainingJob(status="succeeded", card=card, skipped=["fd001-003#0: too short"], promoted=True)
    summary = JobSummary.of(job)
    assert (summary.version, summary.metrics, summary.skipped_runs) == (card.version, card.metrics, 1)
    assert "card" not in summary.model_dump() and summary.id == job.id and summary.promoted is True
    bare = JobSummary.of(TrainingJob())
    assert (bare.version, bare.metrics, bare.skipped_runs, bare.status) == (None, None, 0, "queued")


def test_the_index_keeps_the_newest_and_names_what_falls_off() -> None:
    assert keep_newest([], "a", 2) == (["a"], [])
    assert keep_newest(["b", "a"], "c", 2) == (["c", "b"], ["a"])
    assert keep_newest(["b", "a"], "a", 2) == (["a", "b"], [])  # the same job again: moved, not doubled
    with pytest.raises(ValueError, match="keep must be at least 1"):
        keep_newest([], "a", 0)


@pytest.mark.asyncio
async def test_the_book_saves_a_job_from_its_start_to_its_end() -> None:
    store = MemoryJobStore(keep=10)
    jobs: dict[str, TrainingJob] = {}
    book = JobBook(jobs, store, keep=10, save_seconds=0.01)
    job = TrainingJob()
    go, boosted = asyncio.Event(), asyncio.Event()

    async def run() -> TrainingJob:
        job.status = "running"
        job.report("boosting stage 3/10", 0.3)
        boosted.set()
        await go.wait()
        job.finish("succeeded", message="promoted")
        return job

    jobs[job.id] = job
    task = asyncio.create_task(run())
    book.follow(job, task)
    await boosted.wait()
    await until(lambda: store.records.get(job.id, "").find("boosting stage 3/10") > 0)
    assert store.status(job.id) == "running"
    go.set()
    await until(lambda: store.status(job.id) == "succeeded")
    stored = await book.newest(10)
    assert [j.id for j in stored] == [job.id] and stored[0].progress == 1.0


@pytest.mark.asyncio
async def test_the_end_of_a_job_is_written_once_the_store_is_back() -> None:
    store = MemoryJobStore(keep=10)
    book = JobBook({}, store, keep=10, save_seconds=0.01)
    job = TrainingJob()
    assert await book.save(job) and store.status(job.id) == "queued"
    store.failing = True
    assert not await book.save(job)  # logged; the job runs on

    async def run() -> TrainingJob:
        job.finish("failed", error="ValueError: no data")
        return job

    task = asyncio.create_task(run())
    book.follow(job, task)
    await task
    assert store.status(job.id) == "queued"
    store.failing = False
    await until(lambda: store.status(job.id) == "failed")
    await book.close()


@pytest.mark.asyncio
async def test_recovery_fails_what_the_last_process_left_running_and_lists_across_restarts() -> None:
    store = MemoryJobStore(keep=3)
    before = JobBook({}, store, keep=3, save_seconds=0.01)
    done = TrainingJob(status="succeeded", created_at=NOW - timedelta(minutes=3))
    old = TrainingJob(status="succeeded", created_at=NOW - timedelta(minutes=4))
    running = TrainingJob(
        status="running", stage="reading the archive", created_at=NOW - timedelta(minutes=2)
    )
    queued = TrainingJob(created_at=NOW - timedelta(minutes=1))
    for job in (old, done, running, queued):
        await before.save(job)
    assert store.index == [queued.id, running.id, done.id] and old.id not in store.records  # keep=3

    after = JobBook({}, store, keep=3, save_seconds=0.01)  # a new process on the same store
    failed = await after.recover()
    assert sorted(j.id for j in failed) == sorted([running.id, queued.id])
    assert store.status(running.id) == "failed" and store.status(done.id) == "succeeded"
    got = await after.get(running.id)
    assert got is not None and "interrupted by a restart" in (got.error or "")
    assert await after.get(old.id) is None
    assert [j.id for j in await after.newest(2)] == [queued.id, running.id]
    assert await after.recover() == []  # nothing left running: a second start-up changes nothing
