"""Two training replicas' job books on one real state store (a localdapr sidecar, SQLite `modelstore`,
each replica with its own SDK client): racing for a profile's claim, one wins and the other is told
whose job holds it; the winner's running job keeps its lease, so the other's sweeps leave it alone;
once the winner stops, its job is failed as interrupted after the lease and the claim is free again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from dapr.aio.clients import DaprClient

from apps.common.names import MODEL_STORE, TRAINING_APP_ID
from apps.training.jobs import TrainingJob
from apps.training.jobstore import DaprJobStore, JobBook
from apps.training.leases import DaprClaimStore
from localdapr.sidecar import SidecarOptions
from localdapr.testing import SidecarThread
from tests.integration.localdapr.components import component, write

pytestmark = pytest.mark.sidecar

LEASE = 1.0


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SidecarThread]:
    root = tmp_path_factory.mktemp("replicas")
    db = {"connectionString": str(root / "models.db"), "keyPrefix": "name"}
    write(root / "res", "modelstore.yaml", component(MODEL_STORE, "state.sqlite", db))
    options = SidecarOptions(
        app_id=TRAINING_APP_ID, resources_paths=[root / "res"], registry_dir=root / "reg"
    )
    running = SidecarThread(options).start()
    try:
        yield running
    finally:
        running.stop()


def replica(name: str, client: DaprClient) -> JobBook:
    store = DaprJobStore(client, keep=20)
    claims = DaprClaimStore(client, LEASE)
    return JobBook({}, store, keep=20, save_seconds=0.05, owner=name, lease_seconds=LEASE, claims=claims)


async def eventually(check, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not (found := await check()):
        assert asyncio.get_running_loop().time() < deadline, "not met in time"
        await asyncio.sleep(0.05)
    return found


async def test_one_replica_runs_the_scheduled_job_and_the_other_fails_it_only_once_it_stopped(
    sidecar: SidecarThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAPR_HTTP_PORT", str(sidecar.http_port))
    async with (
        DaprClient(address=sidecar.grpc_address) as one,
        DaprClient(address=sidecar.grpc_address) as two,
    ):
        a, b = replica("a", one), replica("b", two)
        jobs = {"a": TrainingJob(trigger="schedule"), "b": TrainingJob(trigger="schedule")}
        # both fire at 02:00 and race for the profile's claim: one wins
        holders = await asyncio.gather(a.claim(jobs["a"], "turbofan"), b.claim(jobs["b"], "turbofan"))
        assert sorted(h is None for h in holders) == [False, True]
        winner, loser = (a, b) if holders[0] is None else (b, a)
        refused = holders[1] if holders[0] is None else holders[0]
        assert refused is not None and refused.owner == winner.owner
        job = jobs[winner.owner]
        assert refused.job == job.id

        job.status = "running"
        winner.jobs[job.id] = job
        forever = asyncio.create_task(asyncio.Event().wait())
        winner.follow(job, forever)
        await eventually(lambda: _status(loser, job.id, "running"))
        seen: set[object] = set()
        while len(seen) < 3:  # the lease renewed twice; the other replica's sweeps leave the job alone
            assert await loser.sweep() == []
            seen.add((await loser.get(job.id)).lease_until)  # type: ignore[union-attr]
            await asyncio.sleep(0.05)
        assert await loser.claim(TrainingJob(trigger="schedule"), "turbofan") is not None

        await winner.close()  # the winner stops without finishing its job
        forever.cancel()
        failed = await eventually(loser.sweep)
        assert [j.id for j in failed] == [job.id]
        assert f"replica {winner.owner} stopped renewing its lease" in (failed[0].error or "")
        assert await _status(loser, job.id, "failed")
        assert await eventually(lambda: _claimed(loser))  # the claim expired with the lease


async def _status(book: JobBook, job_id: str, status: str) -> bool:
    found = await book.get(job_id)
    return found is not None and found.status == status


async def _claimed(book: JobBook) -> bool:
    return await book.claim(TrainingJob(trigger="schedule"), "turbofan") is None
