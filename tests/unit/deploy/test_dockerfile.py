"""The Dockerfile, checked without a container engine: hadolint, then its structure read by a small
parser (stages, base, user, health check, what it copies), and the system libraries the runtime
dependencies' extension modules link against, which the slim base must have or the image install."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from apps.common import ai4i
from apps.common.cmapss import data_dir
from apps.common.profiles import SHIPPED_PROFILES_DIR

REPO = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO / "Dockerfile"
# Shared libraries every Debian slim image has (libc6, libgcc-s1, libstdc++6, zlib1g: apt needs them).
SLIM_LIBRARIES = {
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libresolv.so.2",
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "libz.so.1",
}


@dataclass
class Instruction:
    command: str
    args: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction]

    def all(self, command: str) -> list[str]:
        return [i.args for i in self.instructions if i.command == command]


def parse() -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n(\s*#[^\n]*\n)*", " ", DOCKERFILE.read_text())
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        command, _, rest = line.partition(" ")
        command = command.upper()
        if command == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], parts[0])
            stages.append(Stage(base, parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None, []))
        elif command == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        else:
            assert stages, f"{command} before the first FROM"
            stages[-1].instructions.append(Instruction(command, rest.strip()))
    return args, stages


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is missing: install the dev extras (pip install -e '.[dev]')"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_on_a_pinned_slim_python() -> None:
    _, stages = parse()
    assert len(stages) >= 2 and stages[0].name, "a named build stage and a runtime stage"
    for stage in stages:
        match = re.fullmatch(r"python:(\d+)\.(\d+)\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", stage.base)
        assert match, f"{stage.base}: not a slim Python pinned to a patch release"
        assert (int(match[1]), int(match[2])) == sys.version_info[:2], "the Python the tests run on"
    runtime = stages[-1]
    copies = runtime.all("COPY")
    assert copies and all(c.startswith(f"--from={stages[0].name} ") for c in copies), (
        "the runtime stage takes only what the build stage made"
    )


def test_runs_as_a_non_root_user_with_a_health_check() -> None:
    runtime = parse()[1][-1]
    user = runtime.all("USER")[-1]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) > 0, "a numeric non-root user (Kubernetes' runAsNonRoot checks it)"
    (check,) = runtime.all("HEALTHCHECK")
    assert "/healthz" in check and "APP_PORT" in check
    env = " ".join(runtime.all("ENV"))
    assert "VIGIL_HOST=0.0.0.0" in env, "apps must listen beyond the container's loopback"


def test_installs_only_the_runtime_dependencies() -> None:
    build = " ".join(parse()[1][0].all("RUN"))
    assert "['project']['dependencies']" in build and "optional-dependencies" not in build
    assert "[dev]" not in DOCKERFILE.read_text()


def test_copies_what_the_apps_read_at_run_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """The apps find profiles/ and the data sets (C-MAPSS, AI4I 2020) beside apps/ (apps/common), so the
    image keeps the repository's layout under its WORKDIR, and .dockerignore lets those paths in."""
    monkeypatch.delenv("VIGIL_DATA_DIR", raising=False)  # the shipped files, not a test's override
    build, runtime = parse()[1][0], parse()[1][-1]
    (workdir,) = runtime.all("WORKDIR")
    copied = {}
    for args in build.all("COPY"):
        source, target = args.split()
        if not source.startswith("--"):
            copied[source.rstrip("/")] = target.rstrip("/")
    for needed in (REPO / "apps", SHIPPED_PROFILES_DIR, data_dir(), ai4i.DEFAULT_FILE):
        relative = needed.relative_to(REPO).as_posix()
        assert copied.get(relative) == f"{workdir}/{relative}", f"{relative} is not at {workdir}/{relative}"
    ignore = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and line[0] != "#"]
    for source in copied:
        assert f"!{source}/" in ignore or f"!{source}" in ignore, f".dockerignore leaves out {source}"


def runtime_distributions() -> set[str]:
    """The installed distributions `pip install` of the [project] dependencies brings, transitively."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    todo = [Requirement(r) for r in project["dependencies"]]
    seen: set[str] = set()
    while todo:
        req = todo.pop()
        name = req.name.lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        for raw in metadata.requires(req.name) or []:
            dep = Requirement(raw)
            # A dependency under an `extra` marker counts only when that extra was asked for.
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in req.extras or {""}):
                todo.append(dep)
    return seen


def test_image_has_every_system_library_the_dependencies_link() -> None:
    if not shutil.which("ldd") or not shutil.which("dpkg"):
        pytest.skip("needs ldd and dpkg (a Debian-like machine) to read what the wheels link against")
    needed: dict[str, str] = {}
    for name in runtime_distributions():
        for file in metadata.distribution(name).files or []:
            if ".so" not in file.name:
                continue
            out = subprocess.run(["ldd", str(file.locate())], capture_output=True, text=True).stdout
            for lib, _, where in (line.strip().partition(" => ") for line in out.splitlines()):
                if where.startswith(("/lib", "/usr/lib")) and lib not in SLIM_LIBRARIES:
                    needed[lib] = where.split()[0]
    runtime = parse()[1][-1]
    installed = " ".join(runtime.all("RUN"))
    for lib, path in needed.items():
        # ldd may print /lib where dpkg recorded /usr/lib (merged /usr): ask for both.
        real = str(Path(path).resolve())
        candidates = [real, f"/usr{real}"] if not real.startswith("/usr/") else [real]
        found = subprocess.run(["dpkg", "-S", *candidates], capture_output=True, text=True).stdout
        package = found.split(":")[0]
        assert package and re.search(rf"\b{re.escape(package)}\b", installed), (
            f"{lib} ({package or path}) is linked by a runtime dependency but not installed in the image"
        )
