"""Start the whole Vigil platform for end-to-end tests: every app of dapr.yaml with its own localdapr
sidecar (in this process) and the app as a real process, so a test can stop and restart one app.
"""

from __future__ import annotations

import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from apps.common import cmapss
from localdapr.launch.runfile import load_run_template
from localdapr.secretsfile import ed25519_pair
from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port, wait_until

REPO = Path(__file__).resolve().parents[2]


def write_components(folder: Path, profile: str, redis: str | None = None, redis_db: int = 0) -> Path:
    """The embedded profile (SQLite + in-memory pub/sub) or the Redis profile, in a temp folder; the
    archive binding is a folder in it (`<folder>/archive`) in both."""
    folder.mkdir(parents=True, exist_ok=True)
    scopes = "scopes: [ingestion, equipment, alerting, archiver, gateway]\n"
    if profile == "embedded":
        state = f'    - name: connectionString\n      value: "{folder / "state.db"}"\n'
        models = f'    - name: connectionString\n      value: "{folder / "models.db"}"\n'
        state_type = models_type = "state.sqlite"
        pubsub = "  type: pubsub.in-memory\n  version: v1\n  metadata: []\n"
    else:
        assert redis
        conn = (
            f'    - name: redisHost\n      value: "{redis}"\n    - name: redisDB\n      value: "{redis_db}"\n'
        )
        state = models = conn
        state_type = models_type = "state.redis"
        pubsub = (
            f"  type: pubsub.redis\n  version: v1\n  metadata:\n{conn}"
            '    - name: processingTimeout\n      value: "5s"\n'
            '    - name: redeliverInterval\n      value: "1s"\n'
        )
    head = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {}\nspec:\n"
    (folder / "statestore.yaml").write_text(
        head.format("statestore") + f"  type: {state_type}\n  version: v1\n  metadata:\n{state}"
        '    - name: actorStateStore\n      value: "true"\n' + scopes
    )
    (folder / "modelstore.yaml").write_text(
        head.format("modelstore") + f"  type: {models_type}\n  version: v1\n  metadata:\n{models}"
        "    - name: keyPrefix\n      value: name\nscopes: [training, inference]\n"
    )
    (folder / "pubsub.yaml").write_text(head.format("pubsub") + pubsub)
    (folder / "archive.yaml").write_text(
        head.format("archive") + "  type: bindings.localstorage\n  version: v1\n  metadata:\n"
        f'    - name: rootPath\n      value: "{folder / "archive"}"\n'
        "scopes: [ingestion, archiver, training]\n"
    )
    return folder


@dataclass
class RunningApp:
    app_id: str
    sidecar: SidecarThread
    process: AppProcess
    module: str
    env: dict[str, str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.process.port}"

    paused: bool = False

    def stop_app(self) -> None:
        self.resume_app()  # a stopped process only acts on SIGTERM once it runs again
        self.process.stop()

    def start_app(self, timeout: float = 30.0) -> None:
        self.process = AppProcess(
            self.module,
            self.process.port,
            self.sidecar.options.app_env(),
            self.env,
            cwd=REPO,
            name=self.app_id,
        ).start(timeout=timeout)

    def kill_app(self) -> None:
        """SIGKILL the app process: a crash (no shutdown hook runs, requests in flight are cut off)."""
        self.resume_app()
        self.process.kill()

    def restart_app(self, timeout: float = 30.0) -> None:
        """Start the same command on the same port again, as a supervisor does after a crash. Returns
        once it listens (uvicorn opens its port after the app's start-up); the sidecar stays up."""
        self.start_app(timeout)

    def pause_app(self) -> None:
        """SIGSTOP: the process hangs (its port still accepts connections, nothing answers)."""
        assert self.process.proc is not None
        os.kill(self.process.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume_app(self) -> None:
        """SIGCONT after `pause_app` (a no-op otherwise)."""
        if self.paused and self.process.proc is not None and self.process.proc.poll() is None:
            os.kill(self.process.proc.pid, signal.SIGCONT)
        self.paused = False


@dataclass
class Platform:
    apps: dict[str, RunningApp] = field(default_factory=dict)

    def url(self, app_id: str) -> str:
        return self.apps[app_id].url

    def stop(self) -> None:
        for app in reversed(list(self.apps.values())):
            app.stop_app()
            app.sidecar.stop()

    def logs(self) -> str:
        return "\n".join(f"==== {a.app_id}\n{a.process.log()[-4000:]}" for a in self.apps.values())


def app_module(app_id: str) -> str:
    """The ASGI app of `app_id`; under pytest (which sets VIGIL_TEST_MODEL_CACHE, tests/conftest.py) the
    training app with its start-up fit shared by the run's platforms (tests/e2e/cached_training.py)."""
    if app_id == "training" and os.environ.get("VIGIL_TEST_MODEL_CACHE"):
        return "tests.e2e.cached_training:app"
    return f"apps.{app_id}.app:app"


def start_platform(
    components: Path, tmp: Path, env: dict[str, str] | None = None, config_file: Path | None = None
) -> Platform:
    """`config_file`: the sidecars' Configuration (default dapr-config/config.yaml)."""
    template = load_run_template(REPO / "dapr.yaml")
    registry = tmp / f"registry-{uuid.uuid4().hex[:6]}"
    # The components written here have no secret store: training signs and inference verifies the model
    # registry with a key pair of this platform, through their settings (as in Kubernetes).
    pair = ed25519_pair()
    signing = {
        "VIGIL_TRAINING_SIGNING_KEY": pair["private-key"],
        "VIGIL_INFERENCE_VERIFY_KEY": pair["public-key"],
    }
    # One LightGBM model instead of the three the RUL model averages: each test trains small models, and
    # three seeds would triple every platform's start-up (a test may still set its own).
    small = {"VIGIL_TRAINING_N_SEEDS": "1"}
    platform = Platform()
    config_dir = REPO / "dapr-config"
    try:
        for spec in template.apps:
            port = free_port()
            sidecar = SidecarThread(
                SidecarOptions(
                    app_id=spec.app_id,
                    resources_paths=[components, config_dir],
                    app_port=port,
                    config_file=config_file or config_dir / "config.yaml",
                    registry_dir=registry,
                )
            ).start()
            app_env = {
                **spec.env,
                **signing,
                **small,
                **(env or {}),
                "APP_PORT": str(port),
                "PYTHONPATH": str(REPO),
            }
            module = app_module(spec.app_id)
            process = AppProcess(
                module, port, sidecar.options.app_env(), app_env, cwd=REPO, name=spec.app_id
            ).start(timeout=60)
            platform.apps[spec.app_id] = RunningApp(spec.app_id, sidecar, process, module, app_env)
        for app in platform.apps.values():
            app.sidecar.wait_app_ready(60)
    except BaseException:
        platform.stop()
        raise
    return platform


def wait_model_ready(platform: Platform, timeout: float = 180) -> None:
    wait_until(
        lambda: httpx.get(f"{platform.url('inference')}/readyz", timeout=5).status_code == 200,
        timeout=timeout,
        interval=0.2,
        what="inference serving a model (training on start-up)",
    )


@contextlib.contextmanager
def running_platform(
    components: Path, tmp: Path, env: dict[str, str] | None = None, config_file: Path | None = None
) -> Iterator[Platform]:
    """The platform, up and serving a model; its apps' logs are printed when it fails to come up."""
    platform = start_platform(components, tmp, env, config_file)
    try:
        wait_model_ready(platform)
    except BaseException:
        print(platform.logs())  # noqa: T201 - shown only when the platform fails to come up
        platform.stop()
        raise
    try:
        yield platform
    finally:
        platform.stop()


def training_job(platform: Platform, body: dict[str, Any]) -> dict[str, Any]:
    """A job through training's API (202), followed to its end; its record, whatever its status."""
    started = httpx.post(f"{platform.url('training')}/v1/train", json=body, timeout=10)
    assert started.status_code == 202, started.text
    location = f"{platform.url('training')}{started.headers['location']}"

    def finished() -> dict[str, Any] | None:
        job = httpx.get(location, timeout=10).json()
        return job if job["status"] not in ("queued", "running") else None

    return wait_until(finished, timeout=120, interval=0.5, what=f"training job {body}")  # type: ignore[no-any-return]


def environ_with(**extra: str) -> dict[str, str]:
    return {**os.environ, **extra}


def send_cycles(platform: Platform, equipment_id: str, cycles: range, unit: int = 3) -> None:
    """POST FD001 training unit `unit`'s `cycles` (seq = cycle) for one machine; all must be accepted."""
    rows = cmapss.load_train()[unit]
    batch = [
        {
            "equipment_id": equipment_id,
            "profile": "turbofan",
            "timestamp": datetime.now(UTC).isoformat(),
            "seq": c,
            "values": cmapss.row_values(rows[c - 1]),
        }
        for c in cycles
    ]
    resp = httpx.post(f"{platform.url('ingestion')}/v1/readings", json=batch, timeout=30)
    assert resp.status_code == 200 and resp.json()["accepted"] == len(batch), resp.text


def alerts_of(platform: Platform, equipment_id: str, kind: str) -> list[dict[str, Any]]:
    """Alerting's alerts of one machine and kind."""
    resp = httpx.get(
        f"{platform.url('alerting')}/v1/alerts",
        params={"equipment_id": equipment_id, "kind": kind},
        timeout=10,
    )
    return list(resp.json())
