"""`vigil replay` and `vigil simulate`: argument parsing and output around vigil.fleet/stream."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Final

import yaml

from apps.common import cmapss
from apps.common.contracts import MAX_BATCH_READINGS
from apps.common.names import INGESTION_APP_ID
from localdapr.trust import TOKENS_FILE
from vigil.fleet import Fleet, FleetError, load_units, parse_units, replay_fleet, simulated_fleet
from vigil.stream import IngestClient, StderrProgress, StreamError, stream

REPO: Final = Path(__file__).resolve().parents[1]
FALLBACK_INGESTION_PORT: Final = 8001


def default_app_url(app_id: str, fallback_port: int, template: Path = REPO / "dapr.yaml") -> str:
    """An app's port from the run template, so `vigil up` and the client commands agree on it."""
    port = fallback_port
    try:
        data = yaml.safe_load(template.read_text()) or {}
        for app in data.get("apps") or []:
            if app.get("appID") == app_id and app.get("appPort"):
                port = int(app["appPort"])
    except (OSError, yaml.YAMLError, ValueError, AttributeError):
        pass  # an installed copy without the template: the documented default port
    return f"http://127.0.0.1:{port}"


def app_token_headers(app_id: str, template: Path = REPO / "dapr.yaml") -> dict[str, str]:
    """The app token `vigil up` made for `app_id` in this run, as its sidecar sends it: an app started by
    `vigil up` answers 401 without it. {} when there is none (another launcher, or no run)."""
    path = template.parent / ".localdapr" / "registry" / TOKENS_FILE
    try:
        token = json.loads(path.read_text())[app_id]["APP_API_TOKEN"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return {"dapr-api-token": str(token)}


def default_ingestion_url(template: Path = REPO / "dapr.yaml") -> str:
    return default_app_url(INGESTION_APP_ID, FALLBACK_INGESTION_PORT, template)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _batch(text: str) -> int:
    value = positive_int(text)
    if value > MAX_BATCH_READINGS:
        raise argparse.ArgumentTypeError(f"at most {MAX_BATCH_READINGS} (ingestion's batch limit)")
    return value


def _speed(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected cycles per second, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError("must be a finite number >= 0 (0 = as fast as possible)")
    return value


def _add_stream_arguments(
    parser: argparse.ArgumentParser, prefix: str | None, speed: float, batch: int
) -> None:
    parser.add_argument("--url", default=None, help="ingestion base URL (default: its port in dapr.yaml)")
    parser.add_argument(
        "--speed", type=_speed, default=speed, help=f"cycles per second, 0 = as fast as possible ({speed:g})"
    )
    parser.add_argument("--batch", type=_batch, default=batch, help=f"readings per request ({batch})")
    shown = repr(prefix) if prefix else "'<subset>-' or '<subset>-test-', e.g. 'fd001-'"
    parser.add_argument("--prefix", default=prefix, help=f"equipment id prefix ({shown})")


def add_replay_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--units", default="all", help="units to replay: 'all' or a list like 1-5,7,10-12")
    parser.add_argument(
        "--set",
        dest="data_set",
        choices=("train", "test"),
        default="train",
        help="training units (run to failure) or test units (cut short); test ids default to "
        "the prefix '<subset>-test-', e.g. 'fd001-test-'",
    )
    parser.add_argument(
        "--subset",
        choices=cmapss.SUBSETS,
        default="FD001",
        help="C-MAPSS subset: FD001 (sea level) or FD002 (six flight conditions)",
    )
    parser.add_argument(
        "--cycles", type=positive_int, default=None, help="replay only each unit's first N cycles"
    )
    _add_stream_arguments(parser, prefix=None, speed=10.0, batch=100)


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--machines", type=positive_int, required=True, help="fleet size")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same fleet (0)")
    parser.add_argument(
        "--noise", type=float, default=0.1, help="gaussian noise, in units of each sensor's spread (0.1)"
    )
    parser.add_argument("--max-shift", type=int, default=50, help="each machine starts 0..N cycles late (50)")
    _add_stream_arguments(parser, prefix="sim-", speed=0.0, batch=500)


def replay_from_args(args: argparse.Namespace) -> Fleet:
    trajectories = load_units(args.data_set, args.subset)
    units = parse_units(args.units, trajectories)
    default_prefix = f"{args.subset.lower()}-" + ("test-" if args.data_set == "test" else "")
    return replay_fleet(trajectories, units, args.prefix or default_prefix, max_cycles=args.cycles)


def simulate_from_args(args: argparse.Namespace) -> Fleet:
    return simulated_fleet(
        load_units("train"),
        args.machines,
        seed=args.seed,
        noise=args.noise,
        max_shift=args.max_shift,
        prefix=args.prefix,
    )


def run_stream(fleet: Fleet, args: argparse.Namespace, what: str) -> int:
    url = args.url or default_ingestion_url()
    pace = f"{args.speed:g} cycles/s" if args.speed else "as fast as possible"
    sys.stderr.write(
        f"{what}: {len(fleet.machines)} machine(s), {fleet.n_ticks} cycles, {fleet.total_readings:,} "
        f"readings -> {url} ({pace}, up to {args.batch} per request)\n"
    )
    try:
        # The run's app token only to the app of the run template, never to a --url given.
        headers = {} if args.url else app_token_headers(INGESTION_APP_ID)
        with IngestClient(url, headers=headers) as client:
            progress = stream(
                fleet, client, batch_size=args.batch, speed=args.speed, reporter=StderrProgress()
            )
    except StreamError as exc:
        sys.stderr.write(f"\nerror: {exc}\n")
        return 1
    sys.stdout.write(progress.summary() + "\n")
    return 130 if progress.interrupted else 0


def run_replay(args: argparse.Namespace) -> int:
    try:
        fleet = replay_from_args(args)
    except (FleetError, FileNotFoundError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return run_stream(fleet, args, f"replaying {args.subset} {args.data_set} units")


def run_simulate(args: argparse.Namespace) -> int:
    try:
        fleet = simulate_from_args(args)
    except (FleetError, FileNotFoundError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    return run_stream(fleet, args, f"simulating a fleet from FD001 (seed {args.seed})")
