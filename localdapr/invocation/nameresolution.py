"""Name resolution between sidecars: a folder of small JSON files, one per running app instance.

daprd uses mDNS on a laptop and Kubernetes DNS in a cluster; localdapr sidecars may live in one
process (the launcher) or in several (tests that restart one sidecar), so they announce themselves
in a shared folder instead. An entry whose process is gone is ignored and removed.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

REGISTRY_ENV = "LOCALDAPR_REGISTRY"


def default_registry_dir() -> Path:
    env = os.environ.get(REGISTRY_ENV)
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / f"localdapr-{os.getuid()}" / "registry"


@dataclass(slots=True)
class AppInstance:
    app_id: str
    instance_id: str
    host: str
    app_port: int | None
    http_port: int
    grpc_port: int
    pid: int
    actor_types: list[str] = field(default_factory=list)
    app_protocol: str = "http"
    # False while the app's health checks fail: callers get daprd's "app is not in a healthy state".
    app_healthy: bool = True
    started_at: float = field(default_factory=time.time)

    @property
    def sidecar_base_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class NameRegistry:
    def __init__(self, folder: Path | None = None, cache_seconds: float = 0.25) -> None:
        self.folder = folder or default_registry_dir()
        self.folder.mkdir(parents=True, exist_ok=True)
        self._cache: tuple[float, list[AppInstance]] | None = None
        self._cache_seconds = cache_seconds

    def _path(self, inst: AppInstance) -> Path:
        return self.folder / f"{inst.app_id}.{inst.instance_id}.json"

    def announce(self, inst: AppInstance) -> None:
        path = self._path(inst)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(inst)))
        tmp.replace(path)  # atomic: readers never see half a file
        self._cache = None

    def withdraw(self, inst: AppInstance) -> None:
        self._path(inst).unlink(missing_ok=True)
        self._cache = None

    def invalidate(self) -> None:
        self._cache = None

    def instances(self) -> list[AppInstance]:
        now = time.monotonic()
        if self._cache is not None and now - self._cache[0] < self._cache_seconds:
            return self._cache[1]
        found: list[AppInstance] = []
        for file in sorted(self.folder.glob("*.json")):
            try:
                inst = AppInstance(**json.loads(file.read_text()))
            except (OSError, ValueError, TypeError):
                continue
            if not _alive(inst.pid):
                file.unlink(missing_ok=True)
                continue
            found.append(inst)
        self._cache = (now, found)
        return found

    def resolve(self, app_id: str) -> list[AppInstance]:
        return [i for i in self.instances() if i.app_id == app_id]
