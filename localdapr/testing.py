"""Helpers to run localdapr sidecars and apps from tests (in a thread, or as processes).

Apps under test run as real processes (uvicorn, or `python -m <module>` for an app that serves itself,
such as a gRPC app) with the same environment `dapr run` gives them, so several apps with different
DAPR_* ports can run in one test without sharing globals.
"""

from __future__ import annotations

import atexit
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import httpx

from localdapr.ports import free_port
from localdapr.threaded import SidecarThread
from localdapr.trust import TOKENS_FILE

__all__ = [
    "AppProcess",
    "ModuleAppProcess",
    "SidecarProcess",
    "SidecarThread",
    "free_port",
    "launcher_token",
    "wait_until",
]


def wait_until(
    condition: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> Any:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"condition not met after {timeout:.1f}s: {what or condition!r} (last value {last!r})")


def launcher_token(template_dir: Path, app_id: str) -> dict[str, str]:
    """The `dapr-api-token` header for `app_id`'s sidecar in a run of `localdapr up` / `vigil up` from a
    template in `template_dir` (the launcher makes a token per app per run); {} until it has made them."""
    try:
        tokens = json.loads((template_dir / ".localdapr" / "registry" / TOKENS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {"dapr-api-token": tokens[app_id]["DAPR_API_TOKEN"]}


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


_running: set[_Process] = set()


def stop_all_processes() -> None:
    """Stop every process these helpers started that is still running (a test that forgot one, a fixture
    that failed half-way): run at interpreter exit, so no app or sidecar outlives the test run."""
    for process in list(_running):
        process.stop(timeout=5)


atexit.register(stop_all_processes)


class _Process:
    def __init__(self, cmd: list[str], env: dict[str, str], cwd: Path | None, name: str) -> None:
        self.cmd = cmd
        self.env = env
        self.cwd = cwd
        self.name = name
        self.log_path = Path(tempfile.mkstemp(prefix=f"{name}-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.cmd, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        _running.add(self)

    def _started_or_stopped(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait until `ready()`; if the process exits or the wait times out, stop it and raise."""
        assert self.proc is not None
        proc = self.proc
        try:
            wait_until(lambda: ready() or proc.poll() is not None, timeout, what=what)
        except TimeoutError:
            self.stop()
            raise
        if proc.poll() is not None:
            self.stop()
            raise RuntimeError(f"{self.name} exited with {proc.returncode}:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 10.0) -> None:
        _running.discard(self)
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        _running.discard(self)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class AppProcess(_Process):
    """An ASGI app run with uvicorn as its own process, with the sidecar's DAPR_* environment."""

    def __init__(
        self,
        target: str,
        port: int,
        sidecar_env: dict[str, str],
        extra_env: dict[str, str] | None = None,
        cwd: Path | None = None,
        name: str = "app",
    ) -> None:
        env = {**os.environ, **sidecar_env, **(extra_env or {})}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(cwd or Path.cwd()), env.get("PYTHONPATH", "")]))
        super().__init__(self.command(target, port), env, cwd, name)
        self.port = port

    @staticmethod
    def command(target: str, port: int) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            target,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]

    def start(self, timeout: float = 30.0) -> Self:
        self._spawn()
        self._started_or_stopped(
            lambda: port_open(self.port), timeout, f"{self.name} listening on {self.port}"
        )
        return self


class ModuleAppProcess(AppProcess):
    """An app that serves itself, run as `python -m <target>` (it listens on APP_PORT, which the
    sidecar's environment gives it): how an app on the SDK's gRPC server, `dapr.ext.grpc.App`, runs."""

    @staticmethod
    def command(target: str, port: int) -> list[str]:
        return [sys.executable, "-m", target]


class SidecarProcess(_Process):
    """`python -m localdapr sidecar ...` as its own process: can be killed and restarted mid-test."""

    def __init__(
        self,
        app_id: str,
        resources: list[Path],
        app_port: int | None = None,
        registry: Path | None = None,
        http_port: int | None = None,
        grpc_port: int | None = None,
        config: Path | None = None,
        env: dict[str, str] | None = None,
        app_protocol: str = "http",
        args: list[str] | None = None,
        metrics_port: int | None = None,
    ) -> None:
        """`args` are further daprd-style flags (`--enable-app-health-check`, ...)."""
        self.app_id = app_id
        self.app_protocol = app_protocol
        self.http_port = http_port or free_port()
        self.grpc_port = grpc_port or free_port()
        self.metrics_port = metrics_port or free_port()  # not daprd's 9090: sidecars run side by side
        self.app_port = app_port
        cmd = [
            sys.executable,
            "-m",
            "localdapr",
            "sidecar",
            "--app-id",
            app_id,
            "--dapr-http-port",
            str(self.http_port),
            "--dapr-grpc-port",
            str(self.grpc_port),
            "--metrics-port",
            str(self.metrics_port),
        ]
        for r in resources:
            cmd += ["--resources-path", str(r)]
        if app_port:
            cmd += ["--app-port", str(app_port)]
        if registry:
            cmd += ["--registry", str(registry)]
        if config:
            cmd += ["--config", str(config)]
        cmd += ["--app-protocol", app_protocol, *(args or [])]
        super().__init__(cmd, {**os.environ, **(env or {})}, None, f"sidecar-{app_id}")

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def app_env(self) -> dict[str, str]:
        env = {
            "DAPR_HTTP_PORT": str(self.http_port),
            "DAPR_GRPC_PORT": str(self.grpc_port),
            "APP_ID": self.app_id,
            "APP_PROTOCOL": self.app_protocol,
        }
        if self.app_port:
            env["APP_PORT"] = str(self.app_port)
        return env

    def healthy(self, path: str = "/v1.0/healthz/outbound") -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{self.http_port}{path}", timeout=1).status_code == 204
        except httpx.HTTPError:
            return False

    def start(self, timeout: float = 30.0, wait_app: bool = False) -> SidecarProcess:
        self._spawn()
        path = "/v1.0/healthz" if wait_app else "/v1.0/healthz/outbound"
        self._started_or_stopped(lambda: self.healthy(path), timeout, f"sidecar {self.app_id} healthy")
        return self
