"""`vigil demo`: the whole platform on this machine, a model, and real engines streaming into it.

Starts every app of dapr.yaml with a localdapr sidecar (the launcher behind `vigil up`, in this
process, embedded profile: nothing to install), waits until all are healthy, makes sure inference
serves a model (trains one through the training app when the registry has none, with progress),
then replays a few FD001 training units at a visible speed and says where to look. Runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Final

import httpx

from apps.common.names import (
    DASHBOARD_APP_ID,
    INFERENCE_APP_ID,
    INGESTION_APP_ID,
    TRAINING_APP_ID,
)
from vigil.command import vigil_command
from vigil.fleet import FleetError, load_units, parse_units, replay_fleet
from vigil.inbox import DEFAULT_WEBHOOK_URL, WebhookInbox
from vigil.replay import app_token_headers
from vigil.reset import ResetError, reset_state
from vigil.stream import IngestClient, StderrProgress, StreamError, stream

REPO: Final = Path(__file__).resolve().parents[1]
MODEL_TIMEOUT: Final = 900.0  # a first model on a slow laptop; training reports progress meanwhile


class DemoError(RuntimeError):
    pass


def say(text: str) -> None:
    sys.stdout.write(
        f"\033[1mvigil demo\033[0m | {text}\n" if sys.stdout.isatty() else f"vigil demo | {text}\n"
    )
    sys.stdout.flush()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", type=Path, default=REPO / "dapr.yaml", help="run template")
    parser.add_argument(
        "--resources", action="append", type=Path, help="components folder (default: components/embedded)"
    )
    parser.add_argument("--units", default="1-8", help="FD001 training units to replay (1-8)")
    parser.add_argument("--speed", type=float, default=10.0, help="cycles per second (10)")
    parser.add_argument("--batch", type=int, default=50, help="readings per request (50)")
    parser.add_argument("--log-level", default="warning", help="localdapr log level (warning)")
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="start from nothing: delete the embedded profile's state (.localdapr/) first, like vigil reset",
    )


def app_urls(ports: dict[str, int | None]) -> dict[str, str]:
    return {app_id: f"http://127.0.0.1:{port}" for app_id, port in ports.items() if port}


async def _get(client: httpx.AsyncClient, url: str) -> httpx.Response | None:
    try:
        return await client.get(url, timeout=5)
    except httpx.HTTPError:
        return None


async def ensure_model(urls: dict[str, str], stop: asyncio.Event, training_token: dict[str, str]) -> None:
    """Inference must serve a model before readings can be predicted on: train one if there is none.

    The demo starts training with start-up training off and asks for a job itself, so it can show the
    job's progress and report a failure instead of waiting on a silent background task.
    """
    async with httpx.AsyncClient(headers=training_token) as client:  # readyz needs no token
        ready = await _get(client, f"{urls[INFERENCE_APP_ID]}/readyz")
        if ready is not None and ready.status_code == 200:
            say(f"inference serves {ready.json().get('models')}")
            return
        say("no model in the registry yet: training one on FD001 (takes a minute or so)")
        # from the shipped file: a fresh platform's archive has no run to failure to learn from yet
        train = {"source": "dataset", "dataset": "FD001", "note": "vigil demo: a first model"}
        job = (await client.post(f"{urls[TRAINING_APP_ID]}/v1/train", json=train, timeout=30)).json()
        deadline = time.monotonic() + MODEL_TIMEOUT
        last_said = float("-inf")
        while not stop.is_set():
            if time.monotonic() > deadline:
                raise DemoError(f"no model after {MODEL_TIMEOUT:.0f} s")
            state = await _get(client, f"{urls[TRAINING_APP_ID]}/v1/jobs/{job['id']}")
            if state is not None and state.status_code == 200:
                job = state.json()
                if job["status"] in ("failed", "no_new_data"):
                    raise DemoError(f"training failed: {job.get('error') or job.get('message')}")
                if time.monotonic() - last_said >= 5.0:  # one line every few seconds between app logs
                    last_said = time.monotonic()
                    say(f"training: {job['stage'] or job['status']} ({job['progress']:.0%})")
            ready = await _get(client, f"{urls[INFERENCE_APP_ID]}/readyz")
            if ready is not None and ready.status_code == 200:
                say(f"inference serves {ready.json().get('models')}")
                return
            await asyncio.sleep(1.0)  # polling interval of a long job, not a wait for luck


def replay_blocking(
    url: str, token: dict[str, str], units: str, speed: float, batch: int, stop: threading.Event
) -> str:
    trajectories = load_units("train")
    fleet = replay_fleet(trajectories, parse_units(units, trajectories), f"demo-{datetime.now():%H%M%S}-")
    say(
        f"replaying FD001 units {units} as {len(fleet.machines)} machines "
        f"({fleet.machines[0].equipment_id} ...) at {speed:g} cycles/s"
    )
    with IngestClient(url, headers=token) as client:
        progress = stream(
            fleet,
            client,
            batch_size=batch,
            speed=speed,
            reporter=StderrProgress(redraw=False, interval=10.0),
            stop=stop,
        )
    return progress.summary()


async def demo(args: argparse.Namespace) -> int:
    from localdapr.errors import ComponentError
    from localdapr.launch.launcher import Launcher
    from localdapr.launch.runfile import load_run_template

    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.WARNING),
        format="localdapr   | %(message)s",
        stream=sys.stdout,
    )
    template = load_run_template(args.file)
    if args.fresh:
        try:
            deleted = reset_state(template.file)
        except (ResetError, OSError) as exc:
            sys.stderr.write(f"vigil demo: error: {exc}\n")
            return 1
        say(f"--fresh: deleted {deleted}" if deleted else "--fresh: no earlier state to delete")
    vigil = vigil_command()  # before the chdir: hints are pasted where the user typed `vigil demo`
    # Component files name their SQLite files and secrets relative to the repository root.
    os.chdir(template.file.parent)
    resources = args.resources or [template.file.parent / "components" / "embedded"]
    os.environ["VIGIL_TRAINING_TRAIN_IF_NO_CHAMPION"] = "false"  # the demo trains itself, visibly
    # The fleet view should move while you watch (the default throttles health snapshots to one per 5 s).
    os.environ.setdefault("VIGIL_EQUIPMENT_HEALTH_PUBLISH_SECONDS", "1")
    launcher = Launcher(template, resources)
    urls = app_urls({spec.app_id: spec.app_port for spec in template.apps})
    stop_replay = threading.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        launcher.stop_event.set()
        stop_replay.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    code = 0
    replay: asyncio.Task[str] | None = None
    inbox = WebhookInbox(DEFAULT_WEBHOOK_URL, lambda text: say(f"notification: {text}"))
    try:
        # The URL first, so it can be opened while the apps start (the page fills in once they answer).
        say(f"dashboard: {urls[DASHBOARD_APP_ID]}")
        if inbox.start():
            say(
                f"alert notifications go to {DEFAULT_WEBHOOK_URL}, where this demo prints them "
                "(your own webhook: notification:webhook-url in components/secrets.json)"
            )
        say(f"starting {', '.join(s.app_id for s in template.apps)} with localdapr sidecars")
        await launcher.start()
        if not await launcher.wait_ready():
            raise DemoError(launcher.exit_reason or "interrupted before the platform was ready")
        say("every app and sidecar is healthy")
        await ensure_model(urls, launcher.stop_event, app_token_headers(TRAINING_APP_ID, args.file))
        if launcher.stop_event.is_set():
            return 0
        say(
            "where to look while engines degrade (alerts come near the end of each engine's life):\n"
            f"    dashboard      {urls[DASHBOARD_APP_ID]}   (open it in a browser: updates live)\n"
            f"    alerts         {vigil} alerts --open   (acknowledge: {vigil} alerts ack ID)\n"
            f"    send readings  {vigil} replay --units 20-30   (ingestion: {urls[INGESTION_APP_ID]})\n"
            "  Ctrl-C stops everything."
        )
        replay = asyncio.create_task(
            asyncio.to_thread(
                replay_blocking,
                urls[INGESTION_APP_ID],
                app_token_headers(INGESTION_APP_ID, args.file),
                args.units,
                args.speed,
                args.batch,
                stop_replay,
            )
        )
        supervise = asyncio.create_task(launcher.supervise())
        done, _ = await asyncio.wait([replay, supervise], return_when=asyncio.FIRST_COMPLETED)
        if replay in done:
            say(replay.result())
            if not launcher.stop_event.is_set():
                say(f"replay finished; the platform keeps running ({vigil} alerts). Ctrl-C stops.")
            await supervise
        if launcher.exit_reason:
            raise DemoError(launcher.exit_reason)
    except (DemoError, StreamError, FleetError, ComponentError) as exc:
        sys.stderr.write(f"vigil demo: error: {exc}\n")
        code = 1
    finally:
        stop_replay.set()
        if replay is not None and not replay.done():
            # The replay thread notices `stop_replay` within one tick; its errors while the platform
            # shuts down are expected and not worth reporting.
            await asyncio.gather(replay, return_exceptions=True)
        await launcher.stop()
        inbox.stop()
        say("stopped")
    return code


def run_demo(args: argparse.Namespace) -> int:
    return asyncio.run(demo(args))
