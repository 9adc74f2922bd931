"""`vigil up` / `python -m localdapr up`: start every app of a run template with its own sidecar.

All sidecars live in this one process (so `pubsub.in-memory` and `state.in-memory` are shared between
apps, unlike daprd); each app is a child process whose output is printed line by line, prefixed with
its app id. Everything stops cleanly on Ctrl-C / SIGTERM, or as soon as one app dies (saying which and
with what exit code).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from localdapr.errors import ComponentError
from localdapr.runfile import AppSpec, RunTemplate
from localdapr.sidecar import Sidecar, SidecarOptions, free_port

log = logging.getLogger("localdapr")

COLORS = ["\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m", "\033[31m"]
RESET = "\033[0m"


@dataclass
class RunningApp:
    name: str
    spec: AppSpec
    sidecar: Sidecar
    process: asyncio.subprocess.Process | None = None
    color: str = ""


def _resolve_command(command: list[str]) -> list[str]:
    # `python` in a run template means "the interpreter running Vigil", so the venv is used even when
    # it is not activated.
    head = command[0]
    if head in ("python", "python3"):
        return [sys.executable, *command[1:]]
    found = shutil.which(head) or shutil.which(head, path=str(Path(sys.executable).parent))
    return [found or head, *command[1:]]


class Launcher:
    def __init__(
        self,
        template: RunTemplate,
        resources_override: list[Path] | None = None,
        registry_dir: Path | None = None,
        replicas: dict[str, int] | None = None,
        ready_timeout: float = 180.0,
        color: bool | None = None,
    ) -> None:
        self.template = template
        self.resources_override = resources_override
        self.registry_dir = registry_dir or (template.file.parent / ".localdapr" / "registry")
        self.replicas = replicas or {}
        self.ready_timeout = ready_timeout
        self.color = sys.stdout.isatty() if color is None else color
        self.apps: list[RunningApp] = []
        self.stop_event = asyncio.Event()
        self.exit_reason = ""
        self._pumps: list[asyncio.Task[None]] = []

    def _resources(self, spec: AppSpec) -> list[Path]:
        """`--resources` replaces the components folder (the first resources path) and keeps the rest,
        so the Resiliency files in dapr-config/ still apply under either profile."""
        if not self.resources_override:
            return spec.resources_paths
        return [*self.resources_override, *spec.resources_paths[1:]]

    def _print(self, app: RunningApp, line: str) -> None:
        label = f"{app.name:<12}"
        if self.color:
            label = f"{app.color}{label}{RESET}"
        print(f"{label}| {line}", flush=True)

    async def _pump(self, app: RunningApp, stream: asyncio.StreamReader) -> None:
        while True:
            raw = await stream.readline()
            if not raw:
                return
            self._print(app, raw.decode(errors="replace").rstrip())

    async def start(self) -> None:
        self.registry_dir.mkdir(parents=True, exist_ok=True)
        for f in self.registry_dir.glob("*.json"):
            f.unlink(missing_ok=True)  # entries of an earlier run of this template
        index = 0
        for spec in self.template.apps:
            count = self.replicas.get(spec.app_id, spec.replicas)
            for replica in range(count):
                name = spec.app_id if count == 1 else f"{spec.app_id}#{replica + 1}"
                app_port = (
                    spec.app_port
                    if replica == 0 and spec.app_port
                    else (free_port() if spec.app_port else None)
                )
                options = SidecarOptions(
                    app_id=spec.app_id,
                    resources_paths=self._resources(spec),
                    app_port=app_port,
                    http_port=spec.http_port if replica == 0 else 0,
                    grpc_port=spec.grpc_port if replica == 0 else 0,
                    config_file=spec.config_file,
                    registry_dir=self.registry_dir,
                    api_token=os.environ.get("DAPR_API_TOKEN") or None,
                )
                sidecar = Sidecar(options)
                app = RunningApp(name, spec, sidecar, color=COLORS[index % len(COLORS)])
                index += 1
                self.apps.append(app)
                await sidecar.start()
                env = {**os.environ, **spec.env, **options.app_env()}
                app.process = await asyncio.create_subprocess_exec(
                    *_resolve_command(spec.command),
                    cwd=spec.app_dir,
                    env=env,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    start_new_session=True,
                )
                assert app.process.stdout is not None and app.process.stderr is not None
                self._pumps.append(asyncio.create_task(self._pump(app, app.process.stdout)))
                self._pumps.append(asyncio.create_task(self._pump(app, app.process.stderr)))
                log.info(
                    "[%s] started (pid %s, app port %s, Dapr HTTP %s, gRPC %s)",
                    name,
                    app.process.pid,
                    app_port,
                    options.http_port,
                    options.grpc_port,
                )

    async def wait_ready(self) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout
        pending = list(self.apps)
        while pending:
            for app in list(pending):
                if app.sidecar.app_ready:
                    pending.remove(app)
                elif app.process is not None and app.process.returncode is not None:
                    self.exit_reason = (
                        f"app {app.name} exited with code {app.process.returncode} before it was ready"
                    )
                    return False
            if loop.time() > deadline:
                names = ", ".join(a.name for a in pending)
                self.exit_reason = f"not ready after {self.ready_timeout:.0f}s: {names}"
                return False
            if self.stop_event.is_set():
                return False
            await asyncio.sleep(0.1)
        return True

    async def supervise(self) -> None:
        """Return when Ctrl-C / SIGTERM arrives or any app dies."""
        waits = {asyncio.create_task(a.process.wait()): a for a in self.apps if a.process is not None}
        stop = asyncio.create_task(self.stop_event.wait())
        done, _ = await asyncio.wait([*waits, stop], return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task in waits:
                app = waits[task]
                self.exit_reason = f"app {app.name} exited with code {task.result()}"
        for task in [*waits, stop]:
            task.cancel()

    async def stop(self) -> None:
        for app in self.apps:
            if app.process is not None and app.process.returncode is None:
                try:
                    os.killpg(app.process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for app in self.apps:
            if app.process is None:
                continue
            try:
                await asyncio.wait_for(app.process.wait(), 10)
            except TimeoutError:
                log.warning("[%s] did not stop after SIGTERM; killing", app.name)
                try:
                    os.killpg(app.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                await app.process.wait()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        for app in reversed(self.apps):
            await app.sidecar.stop()


async def run(launcher: Launcher) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, launcher.stop_event.set)
    code = 0
    try:
        await launcher.start()
        if await launcher.wait_ready():
            log.info("all %d app(s) ready; Ctrl-C stops everything", len(launcher.apps))
            await launcher.supervise()
        if launcher.exit_reason:
            log.error("stopping: %s", launcher.exit_reason)
            code = 1
    except ComponentError as exc:
        log.error("cannot start: %s", exc)
        code = 2
    finally:
        await launcher.stop()
        log.info("stopped")
    return code
