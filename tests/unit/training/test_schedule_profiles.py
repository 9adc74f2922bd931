"""The retrain schedule covers every profile's model, each by its kind's rule of new data: `rul` runs to
failure, `failure` failures (a mill running when the version was trained and failing since counts),
`anomaly` lives with a healthy early life; the jobs one fire starts queue (the configured profile's
first), a profile with a job queued or running gets none, and drift is measured per champion, the
unused age left out."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from apps.common import ai4i
from apps.common.archive import Block
from apps.common.profiles import PROFILES, TURBOFAN
from apps.training.champions import ModelCatalog
from apps.training.jobs import TrainingJob
from apps.training.kind_anomaly import LifeRows, ready_lives
from apps.training.schedule import RetrainSchedule, SchedulePolicy, retrain_trigger
from apps.training.service import TrainingService
from tests.unit.training.registry_fakes import MemoryArchive, ModelRegistries, Published
from vigil.history import ai4i_history, cmapss_history

FD001_FILE = Path(__file__).resolve().parents[3] / "data" / "cmapss" / "train_FD001.txt.gz"
MILLING, ANOMALY = PROFILES["milling"], PROFILES["turbofan-anomaly"]
AT = datetime(2026, 1, 1, tzinfo=UTC)
FD001 = cmapss_history(FD001_FILE, TURBOFAN, AT)
ENGINES = cmapss_history(FD001_FILE, ANOMALY, AT, prefix="tfa-")  # the same engines watched for anomalies
AI4I = ai4i_history(ai4i.DEFAULT_FILE, MILLING, AT)
POLICY = SchedulePolicy(3, 20, None, min_new_failures=3, min_new_lives=4)


def test_the_trigger_rule() -> None:
    assert retrain_trigger(3, 3, None, None) == ("schedule", None)
    assert retrain_trigger(2, 3, 0.9, None) == (None, None)  # drift shown, never acted on
    assert retrain_trigger(1, 3, 0.3, 0.25) == ("drift", None)  # high drift: one new piece is enough
    assert retrain_trigger(0, 3, 0.3, 0.25) == (None, "high drift, but no new data to learn from")
    assert retrain_trigger(2, 3, 0.2, 0.25) == (None, None)
    assert (POLICY.needs("rul"), POLICY.needs("failure"), POLICY.needs("anomaly")) == (3, 3, 4)


def test_a_life_is_ready_for_an_anomaly_model_once_it_shows_two_windows() -> None:
    lives = [LifeRows(f"m#{n}", np.zeros((n, 3)), False, False) for n in (39, 40, 200)]
    assert ready_lives(lives, window=20) == ["m#40", "m#200"]


class Fleet:
    """The archive of a fleet watched three ways, grown step by step."""

    def __init__(self) -> None:
        self.archive = MemoryArchive()
        self.registry = ModelRegistries()
        self.service = TrainingService(
            self.registry,  # type: ignore[arg-type]
            Published(),  # type: ignore[arg-type]
            TURBOFAN,
            params={"n_estimators": 5, "num_leaves": 4},
            archive=self.archive,  # type: ignore[arg-type]
            kind_params={"failure": {"n_estimators": 5}, "anomaly": {"n_estimators": 5}},
        )
        by_model = {p.model_name: p for p in PROFILES.values()}
        catalog = ModelCatalog(self.registry, Published(), by_model)  # type: ignore[arg-type]
        self.started: list[TrainingJob] = []
        profiles = [TURBOFAN, MILLING, ANOMALY]
        self.schedule = RetrainSchedule(self.service, catalog, profiles, POLICY, self.start)
        self.catalog = catalog

    async def start(self, job: TrainingJob) -> str | None:
        self.service.jobs[job.id] = job  # queued, as the app's start_job makes it
        self.started.append(job)
        return None

    def add(self, blocks: list[Block], events: list) -> None:  # type: ignore[type-arg]
        for block in blocks:
            self.archive.histories[block.equipment_id] = block
        self.archive.events += events

    def engines(self, history, units: range, failed: bool = True) -> None:  # type: ignore[no-untyped-def]
        blocks = [history.blocks[u - 1] for u in units]
        ids = {b.equipment_id for b in blocks}
        self.add(blocks, [e for e in history.events if e.equipment_id in ids] if failed else [])

    async def fire(self) -> dict[str, dict]:  # type: ignore[type-arg]
        return (await self.schedule.tick())["models"]  # type: ignore[no-any-return]

    async def run_started(self) -> None:
        for job in self.started:
            done = await self.service.run(job)
            assert done.status == "succeeded", (done.profile, done.error, done.message)
        self.started.clear()


@pytest.mark.asyncio
async def test_each_fire_considers_every_profile_by_its_kinds_rule() -> None:
    fleet = Fleet()
    assert await fleet.schedule.tick() == {"models": {}}  # no model, nothing archived: nothing considered
    fleet.engines(FD001, range(1, 11))  # ten runs to failure
    fleet.engines(FD001, range(11, 13), failed=False)  # two engines running
    fleet.add(AI4I.blocks, list(AI4I.events[:10]))  # a mill's first 10 failures; life 10 is running
    fleet.engines(ENGINES, range(21, 26), failed=False)  # five engines watched for anomalies, running
    first = await fleet.fire()
    assert list(first) == ["turbofan-rul", "milling-failure", "turbofan-anomaly"]
    assert [(m["new_data"], m["found"], m["new"]) for m in first.values()] == [
        ("runs to failure", 10, 10),
        ("failures", 10, 10),
        ("lives with a healthy early life", 5, 5),
    ]
    # one job per model, queued in the profiles' order (the configured one first), one after another
    assert [j.request.profile for j in fleet.started] == ["turbofan", "milling", "turbofan-anomaly"]
    assert [m["job"] for m in first.values()] == [j.id for j in fleet.started]
    assert all(j.trigger == "schedule" and j.request.source == "archive" for j in fleet.started)
    again = await fleet.fire()  # while they are queued: nothing doubled
    assert [m["job"] for m in again.values()] == [
        f"a {p} job is already queued or running" for p in ("turbofan", "milling", "turbofan-anomaly")
    ]
    assert len(fleet.started) == 3
    await fleet.run_started()

    quiet = await fleet.fire()
    assert [(m["new"], m["job"]) for m in quiet.values()] == [(0, None)] * 3
    # drift of each champion, over its running machines; the age left out of the failure and anomaly ones
    assert all(isinstance(m["drift"], dict) and m["drift"]["source"] == "archive" for m in quiet.values())
    ignored = {n: (await fleet.catalog.view(n)).drift.ignored for n in quiet}  # type: ignore[union-attr]
    assert ignored == {
        "turbofan-rul": [],
        "milling-failure": ["age_cycles"],
        "turbofan-anomaly": ["age_cycles"],
    }

    # Three more failures of the mill: the life that was running when v1 was trained is one of them.
    fleet.archive.events += list(AI4I.events[10:13])
    fleet.engines(ENGINES, range(26, 29), failed=False)  # three new engines: under the 4 lives needed
    fleet.engines(FD001, range(11, 13))  # the two running engines failed: under the 3 runs needed
    more = await fleet.fire()
    assert [(m["new"], m["needs"]) for m in more.values()] == [(2, 3), (3, 3), (3, 4)]
    assert [j.request.profile for j in fleet.started] == ["milling"] and more["milling-failure"]["job"]
    assert more["turbofan-rul"]["job"] is None and more["turbofan-anomaly"]["job"] is None
