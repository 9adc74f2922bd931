"""A sidecar's metrics (daprd's Prometheus names, on --metrics-port) and tracing (Configuration's
spec.tracing): one `Telemetry` per sidecar, reached from the building blocks through `current()`.

The API middleware and gRPC interceptor (localdapr.telemetry.api) bind the serving sidecar's
Telemetry for the call, so code deep in a building block records without being handed it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from contextvars import ContextVar
from typing import Any

from aiohttp import web

from localdapr.telemetry.metrics import SidecarMetrics
from localdapr.telemetry.tracing import SidecarTracer, TracingConfig

log = logging.getLogger("localdapr")

__all__ = ["Telemetry", "current", "elapsed_ms"]


def elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _metrics_enabled(spec: dict[str, Any]) -> bool:
    """Configuration `spec.metrics.enabled: false` (or the older `spec.metric`) turns metrics off."""
    for key in ("metrics", "metric"):
        section = spec.get(key)
        if isinstance(section, dict) and str(section.get("enabled", "true")).lower() == "false":
            return False
    return True


class Telemetry:
    def __init__(
        self,
        app_id: str,
        configuration_spec: dict[str, Any] | None = None,
        metrics_port: int | None = None,
        source: str = "configuration",
    ) -> None:
        spec = configuration_spec or {}
        self.app_id = app_id
        self.metrics = SidecarMetrics(app_id, namespace=os.environ.get("NAMESPACE", ""))
        self.tracer = SidecarTracer(
            app_id, TracingConfig.from_spec(spec.get("tracing"), source or "configuration")
        )
        self.metrics_port = metrics_port if _metrics_enabled(spec) else None
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ building blocks
    def state_op(self, component: str, operation: str, success: bool, started: float) -> None:
        labels = {"component": component, "operation": operation, "success": str(success).lower()}
        self.metrics.add("dapr_component_state_count", labels)
        self.metrics.observe("dapr_component_state_latencies", labels, elapsed_ms(started))

    def published(self, component: str, topic: str, success: bool, started: float) -> None:
        labels = {"component": component, "topic": topic, "success": str(success).lower()}
        self.metrics.add("dapr_component_pubsub_egress_count", labels)
        self.metrics.observe("dapr_component_pubsub_egress_latencies", labels, elapsed_ms(started))

    def delivered(self, component: str, topic: str, outcome: str, started: float) -> None:
        """One delivery attempt to the app; `outcome` is SUCCESS, RETRY or DROP as daprd names them."""
        status = outcome.lower()
        labels = {"component": component, "topic": topic, "process_status": status, "status": status}
        self.metrics.add("dapr_component_pubsub_ingress_count", labels)
        self.metrics.observe("dapr_component_pubsub_ingress_latencies", labels, elapsed_ms(started))

    def actor_activated(self, actor_type: str) -> None:
        self.metrics.add("dapr_runtime_actor_activated_total", {"actor_type": actor_type})

    def actor_deactivated(self, actor_type: str) -> None:
        self.metrics.add("dapr_runtime_actor_deactivated_total", {"actor_type": actor_type})

    # ------------------------------------------------------------------ the metrics endpoint
    async def start(self) -> None:
        """Serve GET /metrics on the metrics port (daprd's, 9090 by default); None: not served."""
        if self.metrics_port is None:
            return

        async def scrape(request: web.Request) -> web.Response:
            return web.Response(text=self.metrics.render(), content_type="text/plain", charset="utf-8")

        app = web.Application()
        app.router.add_get("/metrics", scrape)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, "127.0.0.1", self.metrics_port).start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        # Flushing waits on the exporter's HTTP call: off the event loop.
        await asyncio.to_thread(self.tracer.shutdown)


DISABLED = Telemetry("")
_CURRENT: ContextVar[Telemetry] = ContextVar("localdapr_telemetry", default=DISABLED)


def current() -> Telemetry:
    """The Telemetry of the sidecar serving this call (a no-export, unserved one outside any)."""
    return _CURRENT.get()


def bind(telemetry: Telemetry) -> Any:
    return _CURRENT.set(telemetry)


def unbind(token: Any) -> None:
    """Undo a `bind` (its token): a call handed to another sidecar of the same loop gives the caller's
    telemetry back when it returns."""
    _CURRENT.reset(token)
