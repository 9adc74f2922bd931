"""The launcher (`python -m localdapr up`) on the sample app pair, on an app that dies, when it is killed
hard, and on ports another process holds."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from localdapr.launch.launcher import Launcher, PortInUseError
from localdapr.launch.runfile import load_run_template
from localdapr.testing import free_port, wait_until

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


def hello_on_free_ports(tmp_path: Path) -> Path:
    """samples/hello copied with free app ports: its fixed ones may be taken by another test run."""
    sample = tmp_path / "hello"
    shutil.copytree(REPO / "samples" / "hello", sample)
    template = yaml.safe_load((sample / "dapr.yaml").read_text())
    for app in template["apps"]:
        port = free_port()
        app["appPort"] = port
        command = app["command"]
        command[command.index("--port") + 1] = str(port)
    (sample / "dapr.yaml").write_text(yaml.safe_dump(template))
    return sample


def running(pid: int) -> bool:
    """Whether `pid` is a live process; a zombie that its new parent has not reaped yet has ended."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_sample_pair_runs_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    sample = hello_on_free_ports(tmp_path)
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


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux only")
def test_apps_die_with_a_launcher_killed_hard(tmp_path: Path) -> None:
    sample = hello_on_free_ports(tmp_path)
    proc, out = launch(["-f", str(sample / "dapr.yaml")], sample)
    pids: list[int] = []
    try:
        wait_until(
            lambda: out.has("all 2 app(s) ready") or proc.poll() is not None,
            timeout=60,
            what="launcher ready",
        )
        pids = [int(m[1]) for line in out.lines if (m := re.search(r"\] started \(pid (\d+)", line))]
        assert len(pids) == 2 and all(map(running, pids)), out.text()
        proc.kill()  # SIGKILL: the launcher gets no chance to stop its apps
        proc.wait(10)
        wait_until(
            lambda: not any(map(running, pids)),
            timeout=10,
            what=f"apps {pids} gone after the launcher was killed",
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in filter(running, pids):
            with contextlib.suppress(ProcessLookupError):  # it may end between the check and the kill
                os.killpg(pid, signal.SIGKILL)  # each app leads its own process group


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def two_apps(tmp_path: Path, web: dict[str, int]) -> Path:
    """A template of two apps that would run forever; `web`, the second, has the fields in `web`."""
    for name in ("first", "web"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "main.py").write_text("import time\nwhile True:\n    time.sleep(1)\n")
    (tmp_path / "comp").mkdir()
    apps = [{"appID": "first", "appPort": free_port()}, {"appID": "web", **web}]
    for app in apps:
        app.update(appDirPath=f"./{app['appID']}", command=["python", "main.py"])
    template = {"version": 1, "common": {"resourcesPath": "./comp"}, "apps": apps}
    (tmp_path / "dapr.yaml").write_text(yaml.safe_dump(template))
    return tmp_path / "dapr.yaml"


@pytest.mark.parametrize(
    ("field", "label"),
    [("appPort", "app port"), ("daprHTTPPort", "Dapr HTTP port"), ("daprGRPCPort", "Dapr gRPC port")],
)
def test_a_port_in_use_stops_the_start_at_once_naming_it(
    tmp_path: Path, busy_port: int, field: str, label: str
) -> None:
    template = two_apps(tmp_path, {field: busy_port})
    # subprocess.run kills the launcher if it outlives the timeout, which is far below its ready timeout.
    proc = subprocess.run(
        [sys.executable, "-m", "localdapr", "up", "-f", str(template)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert f"port {busy_port} (web's {label}) is already in use" in output
    assert "started (pid" not in output and "sidecar up" not in output  # checked before anything starts


@pytest.mark.parametrize(
    ("field", "label"), [("daprHTTPPort", "Dapr HTTP port"), ("daprGRPCPort", "Dapr gRPC port")]
)
async def test_a_port_taken_after_the_check_is_named_when_the_sidecar_binds(
    tmp_path: Path, busy_port: int, monkeypatch: pytest.MonkeyPatch, field: str, label: str
) -> None:
    launcher = Launcher(load_run_template(two_apps(tmp_path, {field: busy_port})), color=False)
    monkeypatch.setattr(launcher, "_template_ports", list)  # as if the port was free at the check
    try:
        with pytest.raises(
            PortInUseError, match=re.escape(f"port {busy_port} (web's {label}) is already in use")
        ):
            await launcher.start()
        assert launcher.apps[-1].process is None  # web's app was not started
    finally:
        await launcher.stop()
