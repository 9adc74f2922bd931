"""A failure model learnt from the fleet's own history, end to end: `vigil import ai4i` writes AI4I 2020
into the archive of a running platform (one mill, 10,000 readings, 339 failure events) through its own
sidecar, a milling job from `source: archive` trains, registers and is promoted through the training
app, inference serves it, a second job finds nothing new, and a retrain-schedule fire considers the
milling model (no new failure: no job) and measures its drift without the age the model ignores.
Small model (10 trees) so the job takes seconds."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from localdapr.testing import wait_until
from tests.e2e.fleet_replay import served_card
from tests.e2e.platform import REPO, Platform, start_platform, training_job, write_components

pytestmark = pytest.mark.e2e

NAME = "milling-failure"
AI4I_FILE = REPO / "data" / "ai4i2020" / "ai4i2020.csv"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Platform, Path]]:
    """The platform without any model (nothing trains at start-up), and its components folder."""
    tmp = tmp_path_factory.mktemp("archive-failure")
    components = write_components(tmp / "components", "embedded")
    env = {"VIGIL_TRAINING_TRAIN_IF_NO_CHAMPION": "false", "VIGIL_TRAINING_FAILURE_N_ESTIMATORS": "10"}
    p = start_platform(components, tmp, env)
    try:
        yield p, components
    finally:
        p.stop()


def test_an_imported_ai4i_archive_trains_a_failure_model_through_the_platform(
    fleet: tuple[Platform, Path],
) -> None:
    platform, components = fleet
    imported = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "import", "ai4i", str(AI4I_FILE), "--resources", str(components)],
        cwd=components.parent,  # the import sidecar's registry (.localdapr/) lands there, not in the repo
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert "imported 1 machine(s), 10,000 readings" in imported.stdout
    assert "339 event(s) (339 failure(s))" in imported.stdout

    job = training_job(platform, {"profile": "milling", "source": "archive"})
    assert job["status"] == "succeeded", job
    # 340 lives of the one mill (a failure ends each but the last, still running), all new
    assert (job["profile"], job["model_name"], job["runs"], job["new_runs"]) == ("milling", NAME, 340, 340)
    assert job["promoted"] is True and job["gate"]["reason"] == "no champion yet"
    card = job["card"]
    assert card["kind"] == "failure" and card["version"] == 1 and card["unused_features"] == ["age_cycles"]
    assert card["metrics"]["positives"] >= 1 and 0.0 <= card["metrics"]["roc_auc"] <= 1.0
    wait_until(
        lambda: served_card(platform, NAME).version == 1,
        timeout=60,
        interval=0.5,
        what="inference serving v1",
    )
    model = httpx.get(f"{platform.url('training')}/v1/models/{NAME}", timeout=10).json()
    assert model["champion"] == 1 and model["champion_history"][0]["action"] == "gate"

    again = training_job(platform, {"profile": "milling", "source": "archive"})
    assert again["status"] == "no_new_data" and "340 runs, all seen" in again["message"], again

    # A fire of the retrain schedule (the cron binding's route): the milling model is considered, has
    # no new failure, and its drift is measured over the running mill, the unused age left out.
    fired = httpx.post(f"{platform.url('training')}/retrain-schedule", timeout=60)
    assert fired.status_code == 200, fired.text
    milling = fired.json()["models"][NAME]
    assert (milling["new_data"], milling["found"], milling["new"], milling["job"]) == (
        "failures",
        339,
        0,
        None,
    )
    assert milling["drift"]["source"] == "archive"  # inference predicted nothing with it yet
    drift = httpx.get(f"{platform.url('training')}/v1/models/{NAME}", timeout=10).json()["drift"]
    assert drift["ignored"] == ["age_cycles"] and drift["machines"] == 1
    assert "age_cycles" not in {f["name"] for f in drift["features"]}
