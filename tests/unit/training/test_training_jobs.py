"""Training jobs from the archive: labelled runs in, a version out; no new run -> `no_new_data`; the
retrain schedule's threshold; operator promote and rollback; drift kept beside the model."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from apps.common.profiles import TURBOFAN
from apps.training.champions import ChampionConflict, ChampionRequest, ModelCatalog, UnknownModel
from apps.training.jobs import TrainingJob, TrainRequest
from apps.training.schedule import RetrainSchedule, SchedulePolicy
from apps.training.service import TrainingService
from tests.unit.training.registry_fakes import MemoryArchive, MemoryRegistry, Published
from vigil.history import cmapss_history

DATA = Path(__file__).resolve().parents[3] / "data" / "cmapss"
NAME = TURBOFAN.model_name
TINY = {"n_estimators": 5, "num_leaves": 4}
FD001 = cmapss_history(DATA / "train_FD001.txt.gz", TURBOFAN, datetime(2026, 1, 1, tzinfo=UTC))


def add_units(archive: MemoryArchive, units: range, failed: bool = True) -> None:
    """FD001 training units as the archive holds them after `vigil import cmapss` (fd001-001 ...)."""
    for unit in units:
        block = FD001.blocks[unit - 1]
        archive.histories[block.equipment_id] = block
        if failed:
            archive.events += [e for e in FD001.events if e.equipment_id == block.equipment_id]


def starter(started: list[TrainingJob]) -> Callable[[TrainingJob], Awaitable[str | None]]:
    """The schedule's `start`, keeping what it started (the app's runs it once claimed)."""

    async def start(job: TrainingJob) -> str | None:
        started.append(job)
        return None

    return start


def archive_job(force: bool = False) -> TrainingJob:
    return TrainingJob(request=TrainRequest(force=force))


@pytest.fixture
def platform() -> tuple[TrainingService, MemoryRegistry, MemoryArchive, ModelCatalog]:
    registry, archive, published = MemoryRegistry(), MemoryArchive(), Published()
    service = TrainingService(registry, published, TURBOFAN, params=TINY, archive=archive)  # type: ignore[arg-type]
    catalog = ModelCatalog(registry, published, {NAME: TURBOFAN})  # type: ignore[arg-type]
    return service, registry, archive, catalog


@pytest.mark.asyncio
async def test_archive_jobs_train_on_new_runs_and_stop_without_them(platform) -> None:  # type: ignore[no-untyped-def]
    service, registry, archive, _ = platform
    empty = await service.run(archive_job())
    assert empty.status == "no_new_data"
    assert "no turbofan run to failure in the archive" in (empty.message or "")
    add_units(archive, range(1, 11))
    add_units(archive, range(11, 14), failed=False)  # running machines: no label, not trained on
    first = await service.run(archive_job())
    assert first.status == "succeeded", first.error
    assert (first.runs, first.new_runs, first.held_out_runs) == (10, 10, 2)  # fd001-005, fd001-010 held out
    assert first.promoted and registry.champion == 1 and first.progress == 1.0
    assert registry.seen[1] == [f"fd001-{u:03d}#0" for u in range(1, 11)]
    again = await service.run(archive_job())
    assert again.status == "no_new_data" and again.card is None and len(registry.models) == 1
    assert again.message == "no new labelled run since the champion was trained (10 runs, all seen)"
    add_units(archive, range(11, 14))  # those three machines failed meanwhile
    third = await service.run(archive_job())
    assert third.status == "succeeded" and (third.runs, third.new_runs) == (13, 3)
    assert registry.decisions_[2]["champion_version"] == 1  # gated against v1 on the same held-out runs
    forced = await service.run(archive_job(force=True))  # promoted whatever the gate finds
    assert forced.status == "succeeded" and forced.promoted and registry.champion == 3
    unchanged = await service.run(archive_job(force=True))  # nothing new: trained all the same
    assert unchanged.status == "succeeded" and unchanged.new_runs == 0


@pytest.mark.asyncio
async def test_the_schedule_starts_a_job_only_past_the_threshold(platform) -> None:  # type: ignore[no-untyped-def]
    service, registry, archive, catalog = platform
    started: list[TrainingJob] = []
    schedule = RetrainSchedule(service, catalog, [TURBOFAN], SchedulePolicy(3, 20, None), starter(started))
    add_units(archive, range(1, 3))
    quiet = (await schedule.tick())["models"][NAME]
    assert quiet["new"] == 2 and quiet["job"] is None and started == []
    add_units(archive, range(3, 11))

    async def elsewhere(job: TrainingJob) -> str:  # another replica holds the profile's claim
        return "a turbofan job (j0) runs on training replica b"

    refused = RetrainSchedule(service, catalog, [TURBOFAN], SchedulePolicy(3, 20, None), elsewhere)
    assert (await refused.tick())["models"][NAME]["job"] == "a turbofan job (j0) runs on training replica b"
    assert service.jobs == {}  # nothing queued here
    fired = (await schedule.tick())["models"][NAME]
    assert fired["new"] == 10 and fired["job"] == started[0].id and started[0].trigger == "schedule"
    assert fired["new_data"] == "runs to failure" and fired["needs"] == 3
    assert "no champion" in fired["drift"]  # nothing to measure drift of yet
    await service.run(started[0])
    add_units(archive, range(11, 16), failed=False)
    after = (await schedule.tick())["models"][NAME]
    assert after["new"] == 0 and after["job"] is None and len(started) == 1
    assert after["drift"]["level"] in ("stable", "moderate", "significant")
    view = await catalog.view(NAME)
    assert view.drift is not None and view.drift.machines == 5 and view.drift.rows == 5 * 20


@pytest.mark.asyncio
async def test_operators_promote_and_roll_back_with_clear_refusals(platform) -> None:  # type: ignore[no-untyped-def]
    service, registry, archive, catalog = platform
    add_units(archive, range(1, 11))
    for _ in range(3):
        await service.run(archive_job(force=True))  # v1, v2, v3, each champion in turn
    with pytest.raises(UnknownModel, match=r"turbofan-rul has no version 9 \(registered: v1, v2, v3\)"):
        await catalog.promote(NAME, ChampionRequest(version=9))
    with pytest.raises(UnknownModel, match="no model 'nope'"):
        await catalog.promote("nope", ChampionRequest(version=1))
    with pytest.raises(ChampionConflict, match="v3 is already the champion"):
        await catalog.promote(NAME, ChampionRequest(version=3))
    back = await catalog.rollback(NAME, ChampionRequest(by="ops", note="v3 alarms late"))
    assert (back.version, back.previous, back.action, back.by) == (2, 3, "rollback", "ops")
    assert (await catalog.rollback(NAME, ChampionRequest())).version == 1  # walks back, not back and forth
    with pytest.raises(ChampionConflict, match="no earlier champion to roll back to \\(v1 was the first\\)"):
        await catalog.rollback(NAME, ChampionRequest())
    promoted = await catalog.promote(NAME, ChampionRequest(version=3, by="ops"))
    assert promoted.action == "promote" and registry.champion == 3
    view = await catalog.view(NAME)
    actions = [c.action for c in view.champion_history]
    assert actions == ["gate", "gate", "gate", "rollback", "rollback", "promote"]
    assert [d.candidate_version for d in view.decisions] == [1, 2, 3] and view.champion == 3


@pytest.mark.asyncio
async def test_a_refused_candidate_is_not_retrained_on_the_same_runs_at_every_fire() -> None:
    registry, archive, published = MemoryRegistry(), MemoryArchive(), Published()
    # a margin no candidate can beat: the gate refuses every one after the first
    service = TrainingService(registry, published, TURBOFAN, params=TINY, margin=0.99, archive=archive)  # type: ignore[arg-type]
    catalog = ModelCatalog(registry, published, {NAME: TURBOFAN})  # type: ignore[arg-type]
    started: list[TrainingJob] = []
    schedule = RetrainSchedule(service, catalog, [TURBOFAN], SchedulePolicy(2, 20, None), starter(started))
    add_units(archive, range(1, 11))
    await service.run(started.pop() if (await schedule.tick())["models"][NAME]["job"] else archive_job())
    add_units(archive, range(11, 14))
    fired = (await schedule.tick())["models"][NAME]
    assert fired["new"] == 3 and fired["job"] == started[0].id
    refused = await service.run(started[0])
    assert refused.status == "succeeded" and refused.promoted is False and registry.champion == 1
    quiet = (await schedule.tick())["models"][NAME]  # v2 saw those runs: nothing new, though v1 is champion
    assert quiet["new"] == 0 and quiet["job"] is None and len(started) == 1
