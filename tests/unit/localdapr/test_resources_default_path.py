"""Where resources come from when none is given: the Dapr CLI's ~/.dapr/components, as `dapr run`."""

from __future__ import annotations

from pathlib import Path

import pytest

from localdapr.components.spec import default_resources_path, load_resources
from localdapr.errors import ComponentError
from localdapr.launch.runfile import load_run_template


def test_default_is_under_home_or_dapr_runtime_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DAPR_RUNTIME_PATH", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_resources_path() == tmp_path / "home" / ".dapr" / "components"
    monkeypatch.setenv("DAPR_RUNTIME_PATH", str(tmp_path / "rt"))
    assert default_resources_path() == tmp_path / "rt" / ".dapr" / "components"


def template(folder: Path, common: str = "", app: str = "") -> Path:
    (folder / "svc").mkdir(exist_ok=True)
    path = folder / "dapr.yaml"
    path.write_text(
        f"version: 1\ncommon:\n  env: {{A: '1'}}\n{common}apps:\n"
        f"  - appID: svc\n    appDirPath: ./svc\n    command: [python, main.py]\n{app}"
    )
    return path


def test_run_template_without_resources_uses_the_cli_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAPR_RUNTIME_PATH", str(tmp_path / "rt"))
    # The default folder need not exist when the template loads: `vigil up --resources` replaces it.
    app = load_run_template(template(tmp_path)).apps[0]
    assert app.default_resources and app.resources_paths == [tmp_path / "rt" / ".dapr" / "components"]


def test_any_resources_path_in_the_template_wins_over_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAPR_RUNTIME_PATH", str(tmp_path / "rt"))
    (tmp_path / "comp").mkdir()
    app = load_run_template(template(tmp_path, common="  resourcesPaths: [./comp]\n")).apps[0]
    assert not app.default_resources and app.resources_paths == [(tmp_path / "comp").resolve()]
    (tmp_path / "svc" / ".dapr" / "resources").mkdir(parents=True)
    app = load_run_template(template(tmp_path)).apps[0]
    assert not app.default_resources and app.resources_paths == [tmp_path / "svc" / ".dapr" / "resources"]


def test_a_missing_default_folder_says_what_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DAPR_RUNTIME_PATH", str(tmp_path))
    with pytest.raises(ComponentError, match=r"\.dapr/components: resources path does not exist.*dapr init"):
        load_resources([default_resources_path()])
