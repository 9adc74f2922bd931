"""Printed hints name `vigil` the way the user's shell can run it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from vigil.command import vigil_command


def test_plain_vigil_when_the_shell_finds_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "vigil"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert vigil_command() == "vigil"


def test_the_venv_script_when_the_venv_is_not_activated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no vigil there: as in a shell right after `make`
    bin_dir = Path(sys.executable).parent
    monkeypatch.chdir(bin_dir.parent.parent)  # the folder holding the venv: the repository root
    assert vigil_command() == f"{bin_dir.parent.name}/{bin_dir.name}/vigil"  # .venv/bin/vigil


def test_the_absolute_path_from_outside_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # `../../work/x/.venv/bin/vigil` would be hard to paste
    assert vigil_command() == str(Path(sys.executable).parent / "vigil")
