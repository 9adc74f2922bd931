"""The actor runtime of a localdapr sidecar (placement, turn-based calls, state, timers, reminders).

Placeholder until the actor runtime lands: every actor API answers ERR_ACTOR_RUNTIME_NOT_FOUND.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from localdapr.sidecar import Sidecar


class ActorSubsystem:
    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar

    def http_routes(self, app: web.Application, sidecar: Sidecar) -> None:
        async def not_found(request: web.Request) -> web.Response:
            return web.json_response(
                {"errorCode": "ERR_ACTOR_RUNTIME_NOT_FOUND", "message": "actor runtime is not configured"},
                status=500,
            )

        app.router.add_route("*", "/v1.0/actors/{tail:.*}", not_found)

    def grpc_overrides(self) -> dict[str, Any]:
        return {}

    async def on_app_ready(self) -> None:
        """Read the app's /dapr/config and register its actor types (not yet implemented)."""

    async def stop(self) -> None:
        """Deactivate actors and stop timers."""

    def active_counts(self) -> dict[str, int]:
        return {}
