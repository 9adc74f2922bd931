"""`vigil token APP` and the tokens `vigil up` makes per app per run."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from localdapr.launch.launcher import Launcher
from localdapr.launch.runfile import load_run_template
from localdapr.trust import TOKENS_FILE
from vigil.cli import main

REPO = Path(__file__).resolve().parents[3]


def launcher(tmp_path: Path) -> Launcher:
    registry = tmp_path / ".localdapr" / "registry"
    registry.mkdir(parents=True)
    return Launcher(load_run_template(REPO / "dapr.yaml"), registry_dir=registry)


def test_vigil_up_makes_a_token_pair_per_app_readable_by_its_user_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DAPR_API_TOKEN", raising=False)
    monkeypatch.delenv("APP_API_TOKEN", raising=False)
    run = launcher(tmp_path)
    tokens = run._tokens()
    assert set(tokens) == {spec.app_id for spec in run.template.apps}
    every = [t for pair in tokens.values() for t in pair.values()]
    assert len(set(every)) == len(every) and all(len(t) >= 40 for t in every)
    path = run.registry_dir / TOKENS_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == tokens
    assert run._tokens() != tokens  # a new run, new tokens


def test_tokens_given_in_the_environment_are_used_for_every_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAPR_API_TOKEN", "given-dapr")
    monkeypatch.setenv("APP_API_TOKEN", "given-app")
    tokens = launcher(tmp_path)._tokens()
    assert {(t["DAPR_API_TOKEN"], t["APP_API_TOKEN"]) for t in tokens.values()} == {
        ("given-dapr", "given-app")
    }


def test_vigil_token_prints_the_runs_app_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("APP_API_TOKEN", raising=False)
    template = tmp_path / "dapr.yaml"
    template.write_text((REPO / "dapr.yaml").read_text())
    tokens = launcher(tmp_path)._tokens()
    assert main(["token", "alerting", "-f", str(template)]) == 0
    assert capsys.readouterr().out == tokens["alerting"]["APP_API_TOKEN"] + "\n"


def test_vigil_token_without_a_run_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "alerting", "-f", str(tmp_path / "dapr.yaml")]) == 1
    assert "no app token for alerting" in capsys.readouterr().err
