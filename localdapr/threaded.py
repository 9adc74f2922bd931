"""A sidecar on its own event loop in a background thread of the caller's process.

For programs that host a sidecar and also use the Dapr SDK in the same process (`vigil train`, tests,
benchmarks): the SDK's clients check the sidecar's health with blocking calls, which would never
get an answer from a sidecar that shares their event loop.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from localdapr.sidecar import Sidecar, SidecarOptions


class SidecarThread:
    """A sidecar on its own event loop in a background thread (fast to start, same process)."""

    def __init__(self, options: SidecarOptions) -> None:
        self.options = options
        self.sidecar: Sidecar | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, daemon=True, name=f"sidecar-{options.app_id}"
        )

    @property
    def http_port(self) -> int:
        return self.options.http_port

    @property
    def grpc_port(self) -> int:
        return self.options.grpc_port

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.options.grpc_port}"

    @property
    def native_id(self) -> int | None:
        """The OS id of the loop's thread (its CPU is in /proc/self/task/<id>/stat); None before start."""
        return self._thread.native_id

    def call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> SidecarThread:
        self._thread.start()

        async def _start() -> Sidecar:
            sidecar = Sidecar(self.options)
            await sidecar.start()
            return sidecar

        self.sidecar = self.call(_start())
        return self

    def wait_app_ready(self, timeout: float = 30.0) -> None:
        assert self.sidecar is not None
        if not self.call(self.sidecar.wait_app_ready(timeout), timeout + 5):
            raise TimeoutError(f"app {self.options.app_id} not ready on port {self.options.app_port}")

    def stop(self) -> None:
        if self.sidecar is not None:
            self.call(self.sidecar.stop())
            self.sidecar = None
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            # Closing releases the loop's selector and default executor: a process that starts many
            # sidecars (a test run) would otherwise keep one epoll descriptor per sidecar for good.
            self._loop.close()

    def __enter__(self) -> SidecarThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
