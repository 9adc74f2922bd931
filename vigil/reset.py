"""`vigil reset`: forget everything the embedded profile kept, so the next `vigil up` starts from nothing.

The embedded profile keeps its state in `.localdapr/` beside the run template (SQLite state and model
registry, the reading archive, placement files): machines, alerts, models and history all live there.
Deleting it under a running platform would pull the files out from under its SQLite connections, so
reset refuses while any app of the template answers on its port.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
from pathlib import Path
from typing import Final

from localdapr.launch.runfile import load_run_template

REPO: Final = Path(__file__).resolve().parents[1]
STATE_FOLDER: Final = ".localdapr"


class ResetError(RuntimeError):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--file", type=Path, default=REPO / "dapr.yaml", help="run template")
    parser.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")


def state_folder(template: Path) -> Path:
    """Where the embedded components keep their files: paths in them are relative to the template's
    folder, which `vigil up` and `vigil demo` run in. Not resolved: a template that is a symlink into
    another checkout must not reset that checkout's state (`vigil demo` runs beside the link)."""
    return template.absolute().parent / STATE_FOLDER


def running_apps(template: Path) -> list[str]:
    """Apps of the template that accept a connection on their app port, as `app (port N)`."""
    running = []
    for spec in load_run_template(template).apps:
        if not spec.app_port:
            continue
        try:
            socket.create_connection(("127.0.0.1", spec.app_port), timeout=0.5).close()
        except OSError:
            continue
        running.append(f"{spec.app_id} (port {spec.app_port})")
    return running


def describe(folder: Path) -> str:
    files = [p for p in folder.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    return f"{folder} ({len(files)} file(s), {size / 1e6:.1f} MB: machines, alerts, models, archive)"


def check_stopped(template: Path) -> None:
    running = running_apps(template)
    if running:
        raise ResetError(
            f"the platform is running ({', '.join(running)}): stop it first (Ctrl-C where it runs)"
        )


def reset_state(template: Path) -> Path | None:
    """Delete the embedded profile's state; the folder deleted, or None when there was none."""
    check_stopped(template)
    folder = state_folder(template)
    if not folder.exists():
        return None
    shutil.rmtree(folder)
    return folder


def run_reset(args: argparse.Namespace) -> int:
    folder = state_folder(args.file)
    if not folder.exists():
        sys.stdout.write(f"nothing to reset: {folder} does not exist\n")
        return 0
    try:
        check_stopped(args.file)  # before asking: a yes would be wasted on a refusal
    except ResetError as exc:
        sys.stderr.write(f"vigil reset: error: {exc}\n")
        return 1
    if not args.yes:
        sys.stdout.write(f"delete {describe(folder)}? [y/N] ")
        sys.stdout.flush()
        answer = sys.stdin.readline().strip().lower()  # "" at end of input: no
        if answer not in ("y", "yes"):
            sys.stdout.write("nothing deleted\n")
            return 1
    try:
        reset_state(args.file)
    except (ResetError, OSError) as exc:
        sys.stderr.write(f"vigil reset: error: {exc}\n")
        return 1
    sys.stdout.write(f"deleted {folder}: the next `vigil up` or `vigil demo` starts from nothing\n")
    return 0
