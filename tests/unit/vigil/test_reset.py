"""`vigil reset` and `vigil demo --fresh`: the embedded profile's state is deleted only after a yes, and
never under a running platform."""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from localdapr.ports import free_port
from vigil.cli import main


def template(folder: Path, port: int) -> Path:
    path = folder / "dapr.yaml"
    path.write_text(
        f"version: 1\napps:\n  - appID: alerting\n    appDirPath: .\n    appPort: {port}\n"
        "    command: [python, -c, pass]\n"
    )
    (folder / ".localdapr" / "archive").mkdir(parents=True)
    (folder / ".localdapr" / "state.db").write_bytes(b"x" * 1000)
    return path


@pytest.fixture
def listening() -> Iterator[int]:
    """A port something listens on: an app of the platform, as far as reset can tell."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def answer(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))


def test_reset_asks_and_deletes_on_yes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = template(tmp_path, free_port())
    answer(monkeypatch, "n\n")
    assert main(["reset", "-f", str(path)]) == 1
    out = capsys.readouterr().out
    assert f"delete {tmp_path / '.localdapr'} (1 file(s), 0.0 MB" in out and "nothing deleted" in out
    assert (tmp_path / ".localdapr" / "state.db").exists()
    answer(monkeypatch, "")  # end of input (a pipe, no terminal) is a no
    assert main(["reset", "-f", str(path)]) == 1
    answer(monkeypatch, "yes\n")
    assert main(["reset", "-f", str(path)]) == 0
    assert not (tmp_path / ".localdapr").exists()
    assert "deleted " in capsys.readouterr().out
    assert main(["reset", "-f", str(path)]) == 0  # nothing left: says so, no question
    assert "nothing to reset" in capsys.readouterr().out


def test_reset_yes_skips_the_question(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = template(tmp_path, free_port())
    answer(monkeypatch, "")
    assert main(["reset", "--yes", "-f", str(path)]) == 0
    assert not (tmp_path / ".localdapr").exists()


def test_reset_refuses_while_the_platform_runs(
    tmp_path: Path, listening: int, capsys: pytest.CaptureFixture[str]
) -> None:
    path = template(tmp_path, listening)
    assert main(["reset", "--yes", "-f", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"the platform is running (alerting (port {listening}))" in err and "Traceback" not in err
    assert (tmp_path / ".localdapr" / "state.db").exists()


def test_demo_fresh_refuses_while_the_platform_runs(
    tmp_path: Path, listening: int, capsys: pytest.CaptureFixture[str]
) -> None:
    path = template(tmp_path, listening)
    assert main(["demo", "--fresh", "-f", str(path)]) == 1
    assert "the platform is running" in capsys.readouterr().err
    assert (tmp_path / ".localdapr" / "state.db").exists()


def test_a_symlinked_template_resets_the_state_beside_the_link(tmp_path: Path) -> None:
    """`vigil demo` runs beside the link, so that is where its state is; the checkout the link points
    into keeps its own."""
    checkout, elsewhere = tmp_path / "checkout", tmp_path / "elsewhere"
    checkout.mkdir()
    elsewhere.mkdir()
    real = template(checkout, free_port())
    (elsewhere / "dapr.yaml").symlink_to(real)
    (elsewhere / ".localdapr").mkdir()
    assert main(["reset", "--yes", "-f", str(elsewhere / "dapr.yaml")]) == 0
    assert not (elsewhere / ".localdapr").exists()
    assert (checkout / ".localdapr" / "state.db").exists()
