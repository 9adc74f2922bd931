"""`vigil import cmapss|csv|ai4i FILE`: historical data into the reading archive.

The file is read and checked whole first (vigil/history.py: a bad file stops with its line and
column before anything is written), then its readings go into the archive as day chunks and its events
as labels, through the `archive` binding of a localdapr sidecar of app id `archiver` (the chunks and
event files the live platform writes, so training cannot tell imported history from watched history).
Importing a file twice writes the same files again: chunks are named by their content, events by
(machine, seq, kind).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apps.common.archive import split_by_day
from apps.common.names import ARCHIVER_APP_ID
from apps.common.profiles import UnknownProfile, get_profile
from vigil.history import (
    DEFAULT_CYCLE,
    DEFAULT_START,
    History,
    HistoryFileError,
    ai4i_history,
    cmapss_history,
    csv_history,
)
from vigil.sidecar import SidecarStartError, command_sidecar
from vigil.train import ProgressBar


def _start(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an ISO 8601 time, got {text!r}") from None
    if moment.utcoffset() is None:
        raise argparse.ArgumentTypeError(f"{text!r} has no time zone (add Z)")
    return moment


def _minutes(text: str) -> timedelta:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected minutes, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0 minutes")
    return timedelta(minutes=value)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "format",
        choices=("cmapss", "csv", "ai4i"),
        help="C-MAPSS text file, Vigil's CSV layout, or AI4I 2020",
    )
    parser.add_argument("file", type=Path, help="the file (.gz is read as gzip)")
    parser.add_argument(
        "--profile", default=None, help="equipment profile of the machines (turbofan; milling for ai4i)"
    )
    parser.add_argument(
        "--prefix", default=None, help="cmapss: equipment id prefix (default: as vigil replay)"
    )
    parser.add_argument("--rul", type=Path, default=None, help="cmapss test file: its RUL_FD00x.txt")
    parser.add_argument(
        "--start", type=_start, default=DEFAULT_START, help="time of cycle 1 / seq 0 when the file has none"
    )
    parser.add_argument(
        "--cycle-minutes",
        dest="cycle",
        type=_minutes,
        default=DEFAULT_CYCLE,
        help="time between two cycles (seqs) when the file has no timestamps (60)",
    )
    parser.add_argument(
        "--resources",
        type=Path,
        default=None,
        help="components folder (default: components/embedded; components/ = Redis profile)",
    )


def load_history(args: argparse.Namespace) -> History:
    profile = get_profile(args.profile or ("milling" if args.format == "ai4i" else "turbofan"))
    now = datetime.now(UTC)
    if args.format == "cmapss":
        return cmapss_history(
            args.file, profile, now, prefix=args.prefix, rul_path=args.rul, start=args.start, cycle=args.cycle
        )
    if args.rul is not None:
        raise HistoryFileError("--rul is for cmapss test files")
    if args.format == "ai4i":
        name = f"{args.prefix}mill" if args.prefix else "ai4i-mill"
        return ai4i_history(args.file, profile, now, equipment_id=name, start=args.start, cycle=args.cycle)
    if args.prefix is not None:
        raise HistoryFileError("--prefix is for cmapss and ai4i files (a CSV names its machines)")
    return csv_history(args.file, profile, now, start=args.start, cycle=args.cycle)


async def write_history(history: History, source: str, progress: ProgressBar, concurrency: int = 8) -> int:
    """Chunks then events through the archive binding; returns the number of chunks."""
    from dapr.aio.clients import DaprClient

    from apps.common.archivestore import DaprArchive

    chunks = [day for block in history.blocks for day in split_by_day(block)]
    total = len(chunks) + len(history.events)
    done = 0
    limit = asyncio.Semaphore(concurrency)

    async def step(write: Awaitable[str]) -> None:
        nonlocal done
        async with limit:
            await write
        done += 1
        progress(f"written {done}/{total} files", done / total)

    async with DaprClient() as client:
        archive = DaprArchive(client)
        # readings first: an event whose readings are not there yet would label nothing
        await asyncio.gather(*(step(archive.write_block(c, source)) for c in chunks))
        await asyncio.gather(*(step(archive.write_event(e)) for e in history.events))
    return len(chunks)


def run_import(args: argparse.Namespace) -> int:
    try:
        history = load_history(args)
    except (HistoryFileError, UnknownProfile) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    machines = len(history.blocks)
    failures = sum(e.kind == "failure" for e in history.events)
    sys.stderr.write(
        f"{args.file}: {machines} machine(s), {history.readings:,} readings, {len(history.events)} event(s) "
        f"({failures} failure(s)) checked against profile {history.blocks[0].profile!r}\n"
    )
    source = f"import {args.format} {args.file.name}"
    try:
        with command_sidecar(ARCHIVER_APP_ID, args.resources, "import"):
            chunks = asyncio.run(write_history(history, source, ProgressBar()))
    except SidecarStartError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except Exception as exc:
        sys.stderr.write(f"\nerror: writing to the archive failed: {exc}\n")
        return 1
    sys.stdout.write(
        f"imported {machines} machine(s), {history.readings:,} readings in {chunks} chunk(s), "
        f"{len(history.events)} event(s) ({failures} failure(s))\n"
    )
    return 0
