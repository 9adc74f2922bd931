"""The launcher (`python -m localdapr up`) on the sample app pair and on an app that dies."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from localdapr.testing import wait_until

pytestmark = pytest.mark.sidecar

REPO = Path(__file__).resolve().parents[3]


class Output:
    """Collects a process's output lines in a thread, so tests can wait for a line."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.lines.append(line.rstrip())

    def has(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    def text(self) -> str:
        return "\n".join(self.lines)


def launch(args: list[str], cwd: Path) -> tuple[subprocess.Popen[str], Output]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "localdapr", "up", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return proc, Output(proc)


def test_sample_pair_runs_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    sample = tmp_path / "hello"
    shutil.copytree(REPO / "samples" / "hello", sample)
    proc, out = launch(["-f", str(sample / "dapr.yaml")], sample)
    try:
        wait_until(
            lambda: out.has("all 2 app(s) ready") or proc.poll() is not None,
            timeout=60,
            what="launcher ready",
        )
        # The greeter invokes the counter (service invocation + state) and publishes (pub/sub).
        wait_until(lambda: out.has("greeting #2 sent"), timeout=30, what="greeter output\n" + out.text())
        wait_until(
            lambda: out.has('received greeting event: {"hello": 2}'), timeout=30, what="counter output"
        )
        # Every app line is prefixed by its app id.
        assert any(line.startswith("greeter") and "greeting #" in line for line in out.lines)
        assert any(line.startswith("counter") and "received greeting" in line for line in out.lines)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
    assert code == 0, out.text()
    wait_until(lambda: out.has("stopped"), timeout=5)


def test_launcher_stops_everything_when_an_app_dies(tmp_path: Path) -> None:
    (tmp_path / "comp").mkdir()
    for name in ("stays", "dies"):
        (tmp_path / name).mkdir()
    (tmp_path / "dies" / "main.py").write_text("import time, sys\ntime.sleep(1.5)\nsys.exit(3)\n")
    (tmp_path / "stays" / "main.py").write_text("import time\nwhile True:\n    time.sleep(1)\n")
    (tmp_path / "dapr.yaml").write_text(
        "version: 1\ncommon:\n  resourcesPath: ./comp\napps:\n"
        "  - appID: stays\n    appDirPath: ./stays\n    command: [python, main.py]\n"
        "  - appID: dies\n    appDirPath: ./dies\n    command: [python, main.py]\n"
    )
    start = time.monotonic()
    proc, out = launch(["-f", str(tmp_path / "dapr.yaml")], tmp_path)
    code = proc.wait(60)
    assert code == 1
    wait_until(lambda: out.has("app dies exited with code 3"), timeout=5, what=out.text())
    assert time.monotonic() - start < 45


def test_launcher_reports_a_bad_template(tmp_path: Path) -> None:
    (tmp_path / "dapr.yaml").write_text("version: 1\napps:\n  - appID: x\n    command: [python]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "localdapr", "up", "-f", str(tmp_path / "dapr.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "appDirPath" in proc.stderr and "Traceback" not in proc.stderr
