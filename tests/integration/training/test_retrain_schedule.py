"""The learning loop through a real localdapr sidecar: the training app as a process, its
`retrain-schedule` a bindings.cron input binding firing every second, the archive a
bindings.localstorage folder, the registry SQLite. Labelled runs arrive in the archive; a fire past the
threshold starts a job, which registers and promotes a first model; fires without new runs start
nothing; the champion's feature drift is measured over the running machines; more runs start a second
job gated against the first. The official SDK asks training, through the sidecar, how things stand."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dapr.clients import DaprClient

from apps.common.archive import chunk_path, encode_chunk, event_path, split_by_day
from apps.common.names import (
    ARCHIVE_BINDING,
    MODEL_STORE,
    PUBSUB,
    RETRAIN_SCHEDULE_BINDING,
    STATE_STORE,
    TRAINING_APP_ID,
)
from apps.common.profiles import TURBOFAN
from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port, wait_until
from tests.integration.localdapr.components import component, write
from vigil.history import cmapss_history

pytestmark = pytest.mark.sidecar

REPO = Path(__file__).resolve().parents[3]
NAME = TURBOFAN.model_name
FD001 = cmapss_history(
    REPO / "data" / "cmapss" / "train_FD001.txt.gz", TURBOFAN, datetime(2026, 1, 1, tzinfo=UTC)
)


def put(root: Path, path: str, data: bytes) -> None:
    """Whole or not at all (written beside, then renamed): a fire never reads half a file."""
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    part = root.parent / f"{target.name}.part"
    part.write_bytes(data)
    os.replace(part, target)


def archive_units(root: Path, units: range, failed: bool = True) -> None:
    """FD001 units written into the archive folder as the archiver and `vigil import` write them: the
    readings first, then the failure events (which make them labelled runs), so a fire that sees an
    event sees its run whole; readings already there are left as they are."""
    blocks = [FD001.blocks[unit - 1] for unit in units]
    for block in blocks:
        for day in split_by_day(block):
            if not (root / chunk_path(day)).exists():
                put(root, chunk_path(day), encode_chunk(day, "test"))
    if failed:
        machines = {b.equipment_id for b in blocks}
        for event in (e for e in FD001.events if e.equipment_id in machines):
            put(root, event_path(event), event.model_dump_json().encode())


@dataclass
class Training:
    sidecar: SidecarThread
    archive: Path

    def get(self, path: str) -> Any:
        with DaprClient(address=self.sidecar.grpc_address) as client:
            return json.loads(client.invoke_method(TRAINING_APP_ID, path, http_verb="GET").data)

    def jobs(self) -> list[dict[str, Any]]:
        return list(self.get("v1/jobs"))


@pytest.fixture(scope="module")
def training(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Training]:
    root = tmp_path_factory.mktemp("retrain")
    res, archive = root / "res", root / "archive"
    archive.mkdir()
    write(res, "pubsub.yaml", component(PUBSUB, "pubsub.in-memory", {}))
    write(
        res,
        "statestore.yaml",
        component(STATE_STORE, "state.sqlite", {"connectionString": str(root / "s.db")}),
    )
    write(
        res,
        "modelstore.yaml",
        component(MODEL_STORE, "state.sqlite", {"connectionString": str(root / "m.db"), "keyPrefix": "name"}),
    )
    write(
        res, "archive.yaml", component(ARCHIVE_BINDING, "bindings.localstorage", {"rootPath": str(archive)})
    )
    fire_every_second = {"schedule": "@every 1s", "direction": "input"}
    write(res, "schedule.yaml", component(RETRAIN_SCHEDULE_BINDING, "bindings.cron", fire_every_second))
    port = free_port()
    options = SidecarOptions(
        app_id=TRAINING_APP_ID, resources_paths=[res], app_port=port, registry_dir=root / "reg"
    )
    sidecar = SidecarThread(options)
    env = {
        "VIGIL_TRAINING_TRAIN_IF_NO_CHAMPION": "false",
        "VIGIL_TRAINING_RETRAIN_MIN_NEW_RUNS": "5",
        "VIGIL_TRAINING_N_ESTIMATORS": "10",
        "VIGIL_TRAINING_N_SEEDS": "1",
        "VIGIL_TRAINING_DRIFT_RECENT_READINGS": "20",
    }
    app: AppProcess | None = None
    try:
        sidecar.start()
        app = AppProcess(
            "apps.training.app:app", port, sidecar.options.app_env(), env, cwd=REPO, name="training"
        )
        app.start()
        sidecar.wait_app_ready()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DAPR_HTTP_PORT", str(sidecar.http_port))  # the SDK client's health check
            yield Training(sidecar, archive)
    finally:
        if app is not None:
            app.stop()
        sidecar.stop()


def test_fires_start_jobs_only_for_enough_new_labelled_runs(training: Training) -> None:
    archive_units(training.archive, range(1, 4))  # 3 runs: under the threshold of 5
    wait_until(lambda: len(list(training.archive.glob("events/*/*.json"))) == 3, 10, what="3 events")
    first_fire = wait_until(lambda: training.jobs() == [] and training.get(f"v1/models/{NAME}"), 10)
    assert first_fire["champion"] is None
    archive_units(training.archive, range(4, 11))  # 10 runs now
    job = wait_until(lambda: next(iter(training.jobs()), None), 60, what="a job started by a fire")
    assert job["trigger"] == "schedule"
    done = wait_until(
        lambda: (j := training.get(f"v1/jobs/{job['id']}"))["status"] not in ("queued", "running") and j,
        240,
        what="the scheduled job done",
    )
    assert done["status"] == "succeeded", done
    assert (done["runs"], done["new_runs"], done["held_out_runs"], done["promoted"]) == (10, 10, 2, True)
    model = training.get(f"v1/models/{NAME}")
    assert model["champion"] == 1 and model["decisions"][0]["reason"] == "no champion yet"
    assert model["champion_history"][0]["action"] == "gate"

    # Running machines (no failure yet): the next fires measure the champion's drift, start no job.
    archive_units(training.archive, range(11, 14), failed=False)
    drift = wait_until(
        lambda: (d := training.get(f"v1/models/{NAME}")["drift"]) and d["machines"] == 3 and d,
        60,
        what="drift over the three running machines",
    )
    assert drift["version"] == 1 and drift["rows"] == 3 * 20 and drift["features"]
    assert len(training.jobs()) == 1

    archive_units(training.archive, range(11, 16))  # those failed, two more ran to failure: 5 new runs
    second = wait_until(lambda: len(training.jobs()) == 2 and training.jobs()[0], 60, what="a second job")
    done = wait_until(
        lambda: (j := training.get(f"v1/jobs/{second['id']}"))["status"] not in ("queued", "running") and j,
        240,
        what="the second job done",
    )
    assert done["status"] == "succeeded" and done["new_runs"] == 5, done
    decisions = training.get(f"v1/models/{NAME}/decisions")
    assert [d["candidate_version"] for d in decisions] == [1, 2] and decisions[1]["champion_version"] == 1
