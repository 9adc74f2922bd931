"""Several training replicas on one job log: a job's lease (renewed by its owner, expired once it
stops), a sweep that fails only the jobs whose lease expired, and the per-profile claim that lets one
replica alone start an automated job (memory stores applying the same changes as the Dapr ones;
tests/integration/training/test_training_replicas.py runs the real store)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from apps.training.jobs import TrainingJob, interrupted, renew
from apps.training.jobstore import JobBook
from apps.training.leases import Claim, claimed, released
from tests.unit.training.test_job_log import NOW, MemoryJobStore, until


def test_a_lease_is_renewed_when_a_third_of_it_is_gone_and_keeps_a_job_alive() -> None:
    job = TrainingJob(status="running")
    assert renew(job, "a", NOW, 30) and (job.owner, job.lease_until) == ("a", NOW + timedelta(seconds=30))
    assert not renew(job, "a", NOW + timedelta(seconds=9), 30)  # more than two thirds left: no write
    assert renew(job, "a", NOW + timedelta(seconds=11), 30)
    assert job.lease_until == NOW + timedelta(seconds=41)
    assert interrupted(job, NOW + timedelta(seconds=40)) is None  # its owner renews it: left alone
    failed = interrupted(job, NOW + timedelta(seconds=41))
    assert (
        failed is not None
        and failed.status == "failed"
        and "replica a stopped renewing" in (failed.error or "")
    )
    assert renew(job, "b", NOW + timedelta(seconds=12), 30) and job.owner == "b"  # another replica adopts it


def test_a_claim_is_taken_when_free_expired_or_already_the_jobs() -> None:
    mine = Claim(job="j1", owner="a", until=NOW + timedelta(seconds=30))
    theirs = Claim(job="j2", owner="b", until=NOW + timedelta(seconds=30))
    assert claimed(None, mine, NOW) == mine.model_dump_json()
    assert claimed(theirs.model_dump_json().encode(), mine, NOW) is None
    assert (
        claimed(theirs.model_dump_json().encode(), mine, NOW + timedelta(seconds=30)) is not None
    )  # expired
    assert claimed(mine.model_dump_json().encode(), mine, NOW) is not None  # renewed
    assert claimed(b"not json", mine, NOW) is not None
    gone = released(mine.model_dump_json().encode(), "j1", NOW)
    assert gone is not None and Claim.model_validate_json(gone).until == NOW
    assert released(theirs.model_dump_json().encode(), "j1", NOW) is None  # not ours to give up


class MemoryClaimStore:
    """leases.ClaimStore over a dict, applying the same changes as DaprClaimStore."""

    def __init__(self) -> None:
        self.claims: dict[str, bytes] = {}

    async def claim(self, profile: str, mine: Claim, now: datetime) -> Claim | None:
        stored = self.claims.get(profile)
        new = claimed(stored, mine, now)
        if new is None:
            assert stored is not None
            return Claim.model_validate_json(stored)
        self.claims[profile] = new.encode()
        return None

    async def release(self, profile: str, job: str, now: datetime) -> None:
        new = released(self.claims.get(profile), job, now)
        if new is not None:
            self.claims[profile] = new.encode()


def replica(name: str, store: MemoryJobStore, claims: MemoryClaimStore, lease: float) -> JobBook:
    return JobBook({}, store, keep=10, save_seconds=0.01, owner=name, lease_seconds=lease, claims=claims)


@pytest.mark.asyncio
async def test_a_replica_fails_only_the_jobs_whose_lease_expired() -> None:
    store, claims = MemoryJobStore(keep=10), MemoryClaimStore()
    a, b = replica("a", store, claims, lease=1.0), replica("b", store, claims, lease=1.0)
    job = TrainingJob(status="running")
    a.jobs[job.id] = job
    forever = asyncio.create_task(asyncio.Event().wait())  # a job that runs as long as replica a lives
    a.follow(job, forever)
    await until(lambda: store.status(job.id) == "running")
    leases: set[datetime] = set()
    deadline = asyncio.get_running_loop().time() + 10
    while len(leases) < 3:  # renewed twice, and never failed by b meanwhile
        assert await b.sweep() == []
        leases.add(TrainingJob.model_validate_json(store.records[job.id]).lease_until)  # type: ignore[arg-type]
        assert asyncio.get_running_loop().time() < deadline, "the lease was not renewed"
        await asyncio.sleep(0.05)
    assert store.status(job.id) == "running"

    await a.close()  # replica a stops: nobody renews the lease any more
    forever.cancel()
    failed: list[TrainingJob] = []

    async def swept() -> bool:
        failed.extend(await b.sweep())
        return bool(failed)

    deadline = asyncio.get_running_loop().time() + 5
    while not await swept():
        assert asyncio.get_running_loop().time() < deadline, "the expired job was never failed"
        await asyncio.sleep(0.05)
    assert [j.id for j in failed] == [job.id] and store.status(job.id) == "failed"
    assert "replica a stopped renewing its lease" in (failed[0].error or "")
    assert await b.sweep() == []  # swept once


@pytest.mark.asyncio
async def test_one_replica_alone_holds_a_profiles_claim_until_its_job_ends() -> None:
    store, claims = MemoryJobStore(keep=10), MemoryClaimStore()
    a, b = replica("a", store, claims, lease=1.0), replica("b", store, claims, lease=1.0)
    first, second = TrainingJob(trigger="schedule"), TrainingJob(trigger="schedule")
    assert await a.claim(first, "turbofan") is None
    holder = await b.claim(second, "turbofan")
    assert holder is not None and (holder.job, holder.owner) == (first.id, "a")
    assert await b.claim(TrainingJob(trigger="schedule"), "milling") is None  # another profile: free
    go = asyncio.Event()

    async def run() -> TrainingJob:
        first.status = "running"
        await go.wait()
        first.finish("succeeded")
        return first

    a.jobs[first.id] = first
    claimed_until = Claim.model_validate_json(claims.claims["turbofan"]).until
    a.follow(first, asyncio.create_task(run()))
    await until(lambda: Claim.model_validate_json(claims.claims["turbofan"]).until > claimed_until)
    assert await b.claim(second, "turbofan") is not None  # renewed with the job's lease: still held
    go.set()
    await until(lambda: store.status(first.id) == "succeeded")
    await until(lambda: Claim.model_validate_json(claims.claims["turbofan"]).until <= datetime.now(UTC))
    assert await b.claim(second, "turbofan") is None  # given up at the end: the next fire may start one
