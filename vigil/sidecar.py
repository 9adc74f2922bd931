"""One localdapr sidecar for the lifetime of a command (`vigil train`, `vigil keys`, `vigil import`).

These commands do one job as an app would (train and register, keep API keys, write the archive), so
they need that app's Dapr identity and components for a moment, without the rest of the platform.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parents[1]


class SidecarStartError(RuntimeError):
    """The sidecar did not start (a component file is wrong, a server is missing): the message says why."""


@contextlib.contextmanager
def command_sidecar(app_id: str, resources: Path | None, name: str) -> Iterator[None]:
    """A sidecar of `app_id` on the given components folder (default: the embedded profile) and the
    project's dapr-config, on its own thread (the Dapr SDK checks a sidecar's health with a blocking call,
    which would stall a sidecar on the same loop); DAPR_HTTP_PORT/DAPR_GRPC_PORT point the SDK at it.
    Its registry is .localdapr/registry-<name>, apart from a running platform's."""
    from localdapr.errors import ComponentError
    from localdapr.sidecar import SidecarOptions
    from localdapr.threaded import SidecarThread

    options = SidecarOptions(
        app_id=app_id,
        resources_paths=[resources or REPO / "components" / "embedded", REPO / "dapr-config"],
        registry_dir=Path(".localdapr") / f"registry-{name}",
    )
    sidecar = SidecarThread(options)
    try:
        sidecar.start()
    except ComponentError as exc:
        sidecar.stop()
        raise SidecarStartError(str(exc)) from exc
    os.environ["DAPR_HTTP_PORT"] = str(options.http_port)
    os.environ["DAPR_GRPC_PORT"] = str(options.grpc_port)
    try:
        yield
    finally:
        sidecar.stop()
