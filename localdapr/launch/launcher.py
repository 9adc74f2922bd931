"""`vigil up` / `python -m localdapr up`: start every app of a run template with its own sidecar.

All sidecars live in this one process (so `pubsub.in-memory` and `state.in-memory` are shared between
apps, unlike daprd); each app is a child process whose output is printed line by line, prefixed with
its app id. Everything stops cleanly on Ctrl-C / SIGTERM, or as soon as one app dies (saying which and
with what exit code). On Linux the apps also die when the launcher itself is killed hard, and a port of
the template that another process holds stops the start at once, naming the port and the app.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from localdapr.errors import ComponentError
from localdapr.launch.runfile import AppSpec, RunTemplate
from localdapr.sidecar import Sidecar, SidecarOptions, free_port
from localdapr.trust import TOKENS_FILE, forget_key

log = logging.getLogger("localdapr")

COLORS = ["\033[36m", "\033[35m", "\033[33m", "\033[32m", "\033[34m", "\033[31m"]
RESET = "\033[0m"


class PortInUseError(ComponentError):
    """Ports of the run template that another process holds.

    A ComponentError like every other reason a template cannot start, so `vigil up` and `vigil demo`
    report it in one line (exit code 2) instead of a traceback.
    """

    def __init__(self, busy: list[tuple[int, str]]) -> None:
        super().__init__("; ".join(f"port {port} ({what}) is already in use" for port, what in busy))


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


def _instance_name(spec: AppSpec, replica: int, count: int) -> str:
    return spec.app_id if count == 1 else f"{spec.app_id}#{replica + 1}"


def _named_ports(name: str, app_port: int | None, http_port: int, grpc_port: int) -> list[tuple[int, str]]:
    named = [
        (app_port, f"{name}'s app port"),
        (http_port, f"{name}'s Dapr HTTP port"),
        (grpc_port, f"{name}'s Dapr gRPC port"),
    ]
    return [(port, what) for port, what in named if port]


def _in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        # SO_REUSEADDR, as aiohttp, grpc and uvicorn set it: connections of an earlier run lingering in
        # TIME_WAIT do not stop them from binding, so they must not count as "in use" here either.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            return exc.errno == errno.EADDRINUSE
    return False


def _check_free(ports: list[tuple[int, str]]) -> None:
    busy = [(port, what) for port, what in ports if _in_use(port)]
    if busy:
        raise PortInUseError(busy)


def _die_with_launcher(command: list[str]) -> list[str]:
    """`command` run through localdapr/launch/pdeathsig.py, so the app dies with the launcher (Linux only).

    The process group (start_new_session) lets `stop()` end an app with its children, but only while the
    launcher lives to send the signal; a launcher killed by SIGKILL or a crashed terminal cannot. The
    kernel sends the parent-death signal when the *thread* that spawned the app exits: asyncio spawns in
    the event loop's thread, which `asyncio.run` runs on the main thread for the launcher's whole life.
    """
    if not sys.platform.startswith("linux"):
        return command
    return [sys.executable, "-I", str(Path(__file__).with_name("pdeathsig.py")), str(os.getpid()), *command]


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

    def _tokens(self) -> dict[str, dict[str, str]]:
        """A Dapr API token and an app token per app, new for each run; DAPR_API_TOKEN / APP_API_TOKEN
        in the environment are used for every app instead (as `dapr run` hands them to each daprd)."""
        tokens = {
            spec.app_id: {
                "DAPR_API_TOKEN": os.environ.get("DAPR_API_TOKEN") or secrets.token_urlsafe(32),
                "APP_API_TOKEN": os.environ.get("APP_API_TOKEN") or secrets.token_urlsafe(32),
            }
            for spec in self.template.apps
        }
        path = self.registry_dir / TOKENS_FILE
        path.unlink(missing_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(tokens, f)
        return tokens

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

    def _template_ports(self) -> list[tuple[int, str]]:
        """The ports dapr.yaml fixes: those of each app's first instance (other replicas get free ports)."""
        ports: list[tuple[int, str]] = []
        for spec in self.template.apps:
            name = _instance_name(spec, 0, self.replicas.get(spec.app_id, spec.replicas))
            ports += _named_ports(name, spec.app_port, spec.http_port, spec.grpc_port)
            if spec.metrics_port:
                ports.append((spec.metrics_port, f"{name}'s metrics port"))
        return ports

    async def start(self) -> None:
        # Before anything else, the registry clean-up included: the process holding a port is often an
        # earlier `vigil up` of this template that is still running and still needs its entries.
        _check_free(self._template_ports())
        self.registry_dir.mkdir(parents=True, exist_ok=True)
        for f in self.registry_dir.glob("*.json"):
            f.unlink(missing_ok=True)  # entries of an earlier run of this template
        forget_key(self.registry_dir)  # and its sidecars' trust (localdapr/trust.py)
        tokens = self._tokens()
        index = 0
        for spec in self.template.apps:
            count = self.replicas.get(spec.app_id, spec.replicas)
            for replica in range(count):
                name = _instance_name(spec, replica, count)
                app_port = (
                    spec.app_port
                    if replica == 0 and spec.app_port
                    else (free_port() if spec.app_port else None)
                )
                options = SidecarOptions(
                    app_id=spec.app_id,
                    resources_paths=self._resources(spec),
                    app_port=app_port,
                    app_protocol=spec.app_protocol,
                    app_health=spec.app_health,
                    http_port=spec.http_port if replica == 0 else 0,
                    grpc_port=spec.grpc_port if replica == 0 else 0,
                    metrics_port=spec.metrics_port if replica == 0 else 0,
                    config_file=spec.config_file,
                    registry_dir=self.registry_dir,
                    api_token=tokens[spec.app_id]["DAPR_API_TOKEN"],
                    app_api_token=tokens[spec.app_id]["APP_API_TOKEN"],
                )
                if spec.default_resources and not self.resources_override:
                    log.info(
                        "[%s] no resources path for this app in %s: loading %s, the default of `dapr run` "
                        "(written by `dapr init`)",
                        name,
                        self.template.file,
                        options.resources_paths[0],
                    )
                sidecar = Sidecar(options)
                app = RunningApp(name, spec, sidecar, color=COLORS[index % len(COLORS)])
                index += 1
                self.apps.append(app)
                try:
                    await sidecar.start()
                except (OSError, RuntimeError):
                    # A port can be taken between the check above and the bind (and replicas' ports are
                    # only picked now); aiohttp (OSError) and grpc (RuntimeError) say so each its own way.
                    _check_free(_named_ports(name, None, options.http_port, options.grpc_port))
                    raise
                env = {**os.environ, **spec.env, **options.app_env()}
                app.process = await asyncio.create_subprocess_exec(
                    *_die_with_launcher(_resolve_command(spec.command)),
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


def tune_garbage_collector(young_threshold: int = 50_000) -> None:
    """Once the sidecars are up: collect young garbage every `young_threshold` allocations instead of
    Python's 700, and leave what is alive now (modules, components, the servers) out of every later
    collection. Every request a sidecar serves allocates thousands of short-lived objects: with the
    defaults its collector ran hundreds of times a second and walked the whole heap a few times a
    minute (~4% of the sidecars' CPU in bench.bench_pipeline). Garbage is collected first, so none of
    it is kept for good."""
    gc.collect()
    gc.set_threshold(young_threshold, *gc.get_threshold()[1:])
    gc.freeze()


async def run(launcher: Launcher) -> int:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, launcher.stop_event.set)
    code = 0
    try:
        await launcher.start()
        if await launcher.wait_ready():
            tune_garbage_collector()
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
