"""Training jobs that outlive the app: each job's record in the Dapr state store, a bounded index of them.

The records live in `modelstore` (the store training is already scoped to; `keyPrefix: name`, so the keys
are as written here, beside the registry's `models/...` of apps/common/registry.py):

    jobs/<id>     the job as `GET /v1/jobs/{id}` shows it (TrainingJob JSON)
    jobs/index    the ids of the jobs kept, newest first, at most `keep` (etag-guarded)

A job is written when it is created, while it runs (at most once every `save_seconds`, only when it
changed: a fit reports every boosting round) and when it ends. When the index grows past `keep`, the
oldest ids fall off it and their records are deleted in the same transaction. At start-up a job still
queued or running in the store belonged to the process before, which nobody runs any more: it is
marked failed, saying it was interrupted by a restart (jobs.interrupted). One training replica at a
time is assumed (the app runs one job at a time; two replicas would each fail the other's jobs at
their start-up).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime
from typing import Protocol

from dapr.aio.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError, DaprInternalError
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType

from apps.common.names import MODEL_STORE
from apps.training.jobs import ACTIVE, TrainingJob, interrupted, keep_newest

log = logging.getLogger("training")
INDEX_KEY = "jobs/index"
# Records per bulk read: a job with its model card is about 40 KB, and one answer of the sidecar carries
# at most 4 MB (gRPC), so a hundred jobs in one read would not come back.
LOAD_CHUNK = 16


def job_key(job_id: str) -> str:
    return f"jobs/{job_id}"


class JobStoreUnavailable(Exception):
    """The state store did not answer: 503."""


class JobStore(Protocol):
    async def save(self, job_id: str, record: str) -> None:
        """Write the job's record (JSON); index it if it is new. JobStoreUnavailable if it cannot."""
        ...

    async def ids(self) -> list[str]:
        """The ids kept, newest first."""
        ...

    async def load(self, ids: list[str]) -> list[TrainingJob]:
        """The records of `ids` that exist, in that order."""
        ...


class DaprJobStore:
    """JobStore on the Dapr state API (any store behind `modelstore`: transactions and etags)."""

    def __init__(self, client: DaprClient, keep: int, store: str = MODEL_STORE) -> None:
        self.client = client
        self.keep = keep
        self.store = store
        self._indexed: set[str] | None = None  # ids in the index, as this process last read or wrote it

    async def save(self, job_id: str, record: str) -> None:
        try:
            if self._indexed is None:
                self._indexed = set(await self.ids())
            if job_id in self._indexed:
                await self.client.save_state(self.store, job_key(job_id), record)
            else:
                await self._add(job_id, record)
        except (DaprGrpcError, DaprInternalError) as exc:
            raise JobStoreUnavailable(f"the job store {self.store} failed: {exc}") from exc

    async def _add(self, job_id: str, record: str) -> None:
        """The record and the index with the id in front, in one transaction; the ids that fall off the
        index are deleted with it (etag: a concurrent writer's id is not lost, we read again)."""
        for _ in range(20):
            got = await self.client.get_state(self.store, INDEX_KEY)
            index = [str(i) for i in json.loads(got.data)] if got.data else []
            kept, dropped = keep_newest(index, job_id, self.keep)
            operations = [
                TransactionalStateOperation(key=job_key(job_id), data=record),
                TransactionalStateOperation(key=INDEX_KEY, data=json.dumps(kept), etag=got.etag or None),
                *(
                    TransactionalStateOperation(
                        key=job_key(old), operation_type=TransactionOperationType.delete
                    )
                    for old in dropped
                ),
            ]
            try:
                await self.client.execute_state_transaction(self.store, operations)
            except (DaprGrpcError, DaprInternalError):
                continue  # the index changed meanwhile: read it again
            self._indexed = set(kept)
            return
        raise DaprInternalError(f"could not index job {job_id}: too much contention on {INDEX_KEY}")

    async def ids(self) -> list[str]:
        try:
            got = await self.client.get_state(self.store, INDEX_KEY)
        except (DaprGrpcError, DaprInternalError) as exc:
            raise JobStoreUnavailable(f"the job store {self.store} failed: {exc}") from exc
        ids = [str(i) for i in json.loads(got.data)] if got.data else []
        self._indexed = set(ids)
        return ids

    async def load(self, ids: list[str]) -> list[TrainingJob]:
        if not ids:
            return []
        found: dict[str, bytes] = {}
        for start in range(0, len(ids), LOAD_CHUNK):
            keys = [job_key(i) for i in ids[start : start + LOAD_CHUNK]]
            try:
                got = await self.client.get_bulk_state(self.store, keys, parallelism=4)
            except (DaprGrpcError, DaprInternalError) as exc:
                raise JobStoreUnavailable(f"the job store {self.store} failed: {exc}") from exc
            found |= {item.key: item.data for item in got.items if item.data}
        return [TrainingJob.model_validate_json(found[job_key(i)]) for i in ids if job_key(i) in found]


class JobBook:
    """The jobs as the API shows them: those of this process in memory (`jobs`, the dict the training
    service fills; the live objects a running job updates), every kept one in the store (`store`; None:
    memory only, as `vigil train` runs a job)."""

    def __init__(
        self, jobs: dict[str, TrainingJob], store: JobStore | None, keep: int, save_seconds: float
    ) -> None:
        self.jobs = jobs
        self.store = store
        self.keep = keep
        self.save_seconds = save_seconds
        self._followers: set[asyncio.Task[None]] = set()

    async def recover(self) -> list[TrainingJob]:
        """At start-up: fail (and save) every job the store still has as queued or running."""
        if self.store is None:
            return []
        failed = []
        for job in await self.store.load(await self.store.ids()):
            ended = interrupted(job, datetime.now(UTC))
            if ended is not None:
                await self.store.save(ended.id, ended.model_dump_json())
                failed.append(ended)
        return failed

    async def save(self, job: TrainingJob) -> bool:
        """Write the job now; False (logged) when the store fails: the job runs on regardless."""
        if self.store is None:
            return True
        try:
            await self.store.save(job.id, job.model_dump_json())
        except JobStoreUnavailable as exc:
            log.warning("training job %s not saved: %s", job.id, exc)
            return False
        return True

    def follow(self, job: TrainingJob, task: asyncio.Task[TrainingJob]) -> None:
        """Keep the store's record of `job` up to date while `task` runs it, and write its end."""
        follower = asyncio.create_task(self._follow(job, task))
        self._followers.add(follower)
        follower.add_done_callback(self._followers.discard)

    async def _follow(self, job: TrainingJob, task: asyncio.Task[TrainingJob]) -> None:
        saved: str | None = None
        while True:
            done = task.done()  # before the snapshot: once done, the snapshot is the job's end
            snapshot = job.model_dump_json()
            if snapshot != saved and await self.save(job):
                saved = snapshot
            if done and saved == snapshot:
                break
            if done:  # the store failed to take the job's end: try again until it does
                await asyncio.sleep(self.save_seconds)
            else:
                await asyncio.wait({task}, timeout=self.save_seconds)
        self._forget_finished()

    def _forget_finished(self) -> None:
        """Memory holds the running jobs and the newest finished ones (the store holds the rest)."""
        finished = sorted(
            (j for j in self.jobs.values() if j.status not in ACTIVE),
            key=lambda j: j.created_at,
            reverse=True,
        )
        for old in finished[self.keep :]:
            self.jobs.pop(old.id, None)

    async def get(self, job_id: str) -> TrainingJob | None:
        live = self.jobs.get(job_id)
        if live is not None or self.store is None:
            return live
        found = await self.store.load([job_id])
        return found[0] if found else None

    async def newest(self, limit: int) -> list[TrainingJob]:
        """The newest `limit` jobs: the store's, with this process's live objects in place of their
        records (fresher: a record lags a running job by up to save_seconds)."""
        stored = [] if self.store is None else await self.store.load((await self.store.ids())[:limit])
        merged = {job.id: job for job in stored} | dict(self.jobs)
        return sorted(merged.values(), key=lambda j: j.created_at, reverse=True)[:limit]

    async def close(self) -> None:
        for follower in list(self._followers):
            follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follower
