"""Training jobs that outlive the app: each job's record in the Dapr state store, a bounded index of them.

The records live in `modelstore` (the store training is already scoped to; `keyPrefix: name`, so the keys
are as written here, beside the registry's `models/...` of apps/common/registry.py):

    jobs/<id>     the job as `GET /v1/jobs/{id}` shows it (TrainingJob JSON)
    jobs/index    the ids of the jobs kept, newest first, at most `keep` (etag-guarded)

A job is written when it is created, while it runs (at most once every `save_seconds`, only when it
changed: a fit reports every boosting round) and when it ends. When the index grows past `keep`, the
oldest ids fall off it and their records are deleted in the same transaction.

Several replicas: each job names its `owner` (the replica running it) and carries a lease
(`lease_until`) the owner renews while the job is queued or running (written about every third of
`lease_seconds`). At start-up, and every half lease after, a replica looks at the jobs still queued or
running in the store (`sweep`) and fails those whose lease has expired, saying they were interrupted
(jobs.interrupted; an etag-guarded write that looks at the lease again): another replica's live jobs are
left alone. Automated jobs also hold their profile's claim (leases.py), so two replicas never both run
the scheduled retrain. Replicas' clocks must agree within a small part of a lease.
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
from apps.common.statecas import Change, StateContention, update_state
from apps.training.jobs import ACTIVE, TrainingJob, interrupted, keep_newest, renew
from apps.training.leases import Claim, ClaimStore, ClaimUnavailable

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

    async def update(self, job_id: str, change: Change) -> bool:
        """Apply `change` to the job's record unless someone wrote it meanwhile (then read again); True
        when written, False when `change` left it as it was."""
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

    async def update(self, job_id: str, change: Change) -> bool:
        try:
            return await update_state(self.client, self.store, job_key(job_id), change)
        except (DaprGrpcError, DaprInternalError, StateContention) as exc:
            raise JobStoreUnavailable(f"the job store {self.store} failed: {exc}") from exc

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
    memory only, as `vigil train` runs a job). `owner`: this replica's id, on its jobs' leases."""

    def __init__(
        self,
        jobs: dict[str, TrainingJob],
        store: JobStore | None,
        keep: int,
        save_seconds: float,
        owner: str = "local",
        lease_seconds: float = 30.0,
        claims: ClaimStore | None = None,
    ) -> None:
        self.jobs = jobs
        self.store = store
        self.keep = keep
        self.save_seconds = save_seconds
        self.owner = owner
        self.lease_seconds = lease_seconds
        self.claims = claims
        self._claimed: dict[str, str] = {}  # job id -> the profile whose claim it holds
        self._ended: set[str] = set()  # ids seen finished in the store: a sweep reads them no more
        self._followers: set[asyncio.Task[None]] = set()

    async def recover(self) -> list[TrainingJob]:
        """At start-up: the first sweep."""
        return await self.sweep()

    async def sweep(self) -> list[TrainingJob]:
        """Fail (and save) every job the store has as queued or running whose lease has expired: its
        owner stopped (this replica's own live jobs, in memory, renew theirs)."""
        if self.store is None:
            return []
        ids = await self.store.ids()
        self._ended &= set(ids)
        mine = {i for i, j in self.jobs.items() if j.status in ACTIVE}
        failed = []
        for job in await self.store.load([i for i in ids if i not in self._ended and i not in mine]):
            if job.status not in ACTIVE:
                self._ended.add(job.id)
                continue
            now = datetime.now(UTC)
            if interrupted(job, now) is None:
                continue  # its owner renews its lease
            ended: list[TrainingJob] = []

            def fail(
                stored: bytes | None, now: datetime = now, ended: list[TrainingJob] = ended
            ) -> str | None:
                # looked at again as written: its owner may have renewed the lease since the read
                current = (
                    None if stored is None else interrupted(TrainingJob.model_validate_json(stored), now)
                )
                ended[:] = [] if current is None else [current]
                return None if current is None else current.model_dump_json()

            if await self.store.update(job.id, fail):
                failed.extend(ended)
                self._ended.add(job.id)
        return failed

    async def claim(self, job: TrainingJob, profile: str) -> Claim | None:
        """Take `profile`'s claim for `job` (an automated one): None once held, else the claim that
        holds it (another replica's job). ClaimUnavailable when the store does not answer."""
        if self.claims is None:
            return None
        now = datetime.now(UTC)
        renew(job, self.owner, now, self.lease_seconds)
        assert job.lease_until is not None
        holder = await self.claims.claim(
            profile, Claim(job=job.id, owner=self.owner, until=job.lease_until), now
        )
        if holder is None:
            self._claimed[job.id] = profile
        return holder

    def adopt(self, job: TrainingJob) -> None:
        """Make this replica the job's owner, with a fresh lease (before its first write)."""
        renew(job, self.owner, datetime.now(UTC), self.lease_seconds)

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
            if not done and renew(job, self.owner, datetime.now(UTC), self.lease_seconds):
                await self._renew_claim(job)
            snapshot = job.model_dump_json()
            if snapshot != saved and await self.save(job):
                saved = snapshot
            if done and saved == snapshot:
                break
            if done:  # the store failed to take the job's end: try again until it does
                await asyncio.sleep(self.save_seconds)
            else:
                await asyncio.wait({task}, timeout=self.save_seconds)
        await self._release_claim(job)
        self._forget_finished()

    async def _renew_claim(self, job: TrainingJob) -> None:
        profile = self._claimed.get(job.id)
        if profile is None or self.claims is None or job.lease_until is None:
            return
        mine = Claim(job=job.id, owner=self.owner, until=job.lease_until)
        try:
            holder = await self.claims.claim(profile, mine, datetime.now(UTC))
        except ClaimUnavailable as exc:
            log.warning("training job %s: %s", job.id, exc)
            return
        if holder is not None:  # it expired while this replica was stalled, and another took it
            log.warning(
                "training job %s lost the %s claim to job %s (%s)", job.id, profile, holder.job, holder.owner
            )

    async def _release_claim(self, job: TrainingJob) -> None:
        profile = self._claimed.pop(job.id, None)
        if profile is None or self.claims is None:
            return
        try:
            await self.claims.release(profile, job.id, datetime.now(UTC))
        except ClaimUnavailable as exc:  # it expires with the lease
            log.warning("training job %s: %s", job.id, exc)

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
