"""App health checks, as daprd's pkg/apphealth runs them (`--enable-app-health-check`).

The app starts out unhealthy. It is probed at once and then every `probe_interval`, each probe with
`probe_timeout`: a successful probe makes it healthy, `threshold` failed probes in a row make it
unhealthy. Each change is handed to `on_change` (awaited, so changes are applied one at a time, in
order). The probe is the app channel's: `GET <appHealthCheckPath>` answered 2xx over HTTP,
`AppCallbackHealthCheck/HealthCheck` answered OK over gRPC.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("localdapr")


@dataclass(slots=True)
class AppHealthConfig:
    """daprd's defaults: probe every 5 s with a 500 ms timeout, unhealthy after 3 failures in a row."""

    check_path: str = "/healthz"  # HTTP apps only: a gRPC app is asked AppCallbackHealthCheck
    probe_interval: float = 5.0
    probe_timeout: float = 0.5
    threshold: int = 3

    def validate(self) -> None:
        """daprd's checks on the flags (ValueError with daprd's wording)."""
        if self.probe_interval <= 0:
            raise ValueError("probe interval must be larger than 0")
        if self.probe_timeout > self.probe_interval:
            raise ValueError("app health checks probe timeouts must be smaller than probe intervals")
        if self.threshold < 1:
            raise ValueError("app health threshold must be at least 1")

    def metadata(self, protocol: str) -> dict[str, Any]:
        """`appConnectionProperties.health` of the metadata API: durations as Go prints them, and the
        path only for HTTP apps, as daprd."""
        out: dict[str, Any] = {
            "healthProbeInterval": _go_duration(self.probe_interval),
            "healthProbeTimeout": _go_duration(self.probe_timeout),
            "healthThreshold": self.threshold,
        }
        if protocol == "http":
            out["healthCheckPath"] = self.check_path
        return out


def _go_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    return f"{seconds:g}s"


class AppHealth:
    def __init__(
        self,
        app_id: str,
        config: AppHealthConfig,
        probe: Callable[[float], Awaitable[bool]],
        on_change: Callable[[bool], Awaitable[None]],
    ) -> None:
        self.app_id = app_id
        self.config = config
        self._probe = probe
        self._on_change = on_change
        self.failures = config.threshold  # unhealthy until a probe succeeds, as daprd
        self._task: asyncio.Task[None] | None = None

    @property
    def healthy(self) -> bool:
        return self.failures < self.config.threshold

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"app-health-{self.app_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await self.record(await self._probe(self.config.probe_timeout))
            # A ticker, as daprd's: the next probe is due one interval after this one started.
            await asyncio.sleep(max(0.0, self.config.probe_interval - (loop.time() - started)))

    async def record(self, ok: bool) -> None:
        if ok:
            was_unhealthy = not self.healthy
            self.failures = 0
            if was_unhealthy:
                log.info("[%s] app entered healthy status", self.app_id)
                await self._on_change(True)
            return
        self.failures += 1
        if self.failures == self.config.threshold:
            log.warning(
                "[%s] app entered un-healthy status (%d failed health probes in a row)",
                self.app_id,
                self.failures,
            )
            await self._on_change(False)
