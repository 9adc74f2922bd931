"""`vigil train` on its own: starts its sidecar, trains, registers and promotes, and exits (it used to
hang 60 s in the SDK's blocking health check against a sidecar on the same event loop)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_vigil_train_registers_a_first_model_and_exits(tmp_path: Path) -> None:
    shutil.copytree(REPO / "components" / "embedded", tmp_path / "components")
    shutil.copy(REPO / "components" / "secrets.json", tmp_path / "components")  # the secret store's file
    cmd = [sys.executable, "-m", "vigil.cli", "train", "--n-estimators", "5", "--resources", "components"]
    # cwd = tmp_path: the embedded profile's relative .localdapr/models.db lands there, not in the repo.
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "registered turbofan-rul v1" in done.stdout and "promoted to champion" in done.stdout
    assert (tmp_path / ".localdapr" / "models.db").exists()
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "registered turbofan-rul v2" in again.stdout, again.stderr[-3000:]


def test_vigil_train_trains_the_profiles_model_kind(tmp_path: Path) -> None:
    """`--profile milling` trains the failure classifier on AI4I 2020, `--profile turbofan-anomaly` the
    anomaly model on FD001 (each profile's default data set); an impossible pair is refused."""
    shutil.copytree(REPO / "components" / "embedded", tmp_path / "components")
    shutil.copy(REPO / "components" / "secrets.json", tmp_path / "components")
    base = [sys.executable, "-m", "vigil.cli", "train", "--n-estimators", "5", "--resources", "components"]
    for profile, says in (("milling", "roc_auc="), ("turbofan-anomaly", "false_alarm_rate=")):
        done = subprocess.run(
            [*base, "--profile", profile], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"registered {profile if profile != 'milling' else 'milling-failure'} v1" in done.stdout
        assert says in done.stdout and "promoted to champion" in done.stdout
    wrong = [*base, "--profile", "milling", "--dataset", "FD001"]
    refused = subprocess.run(wrong, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "FD001 has no" in refused.stderr, refused.stderr[-3000:]
