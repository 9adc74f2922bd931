"""The lock API on both transports, as daprd serves it.

gRPC: `TryLockAlpha1` and `UnlockAlpha1` (the SDK's `try_lock` / `unlock`). HTTP:
`POST /v1.0-alpha1/lock/{store}` with `{"resourceId", "lockOwner", "expiryInSeconds"}` answering
`{"success": bool}`, and `POST /v1.0-alpha1/unlock/{store}` with `{"resourceId", "lockOwner"}`
answering `{"status": <number>}` (daprd writes the enum as a number there). Bodies are read as
protojson, so the proto field names (`resource_id`, ...) are accepted too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc
from aiohttp import web
from dapr.proto import api_v1
from google.protobuf import json_format

from localdapr.errors import malformed

if TYPE_CHECKING:
    from localdapr.lock.block import LockBlock

ALPHA = "/v1.0-alpha1"


async def try_lock(api: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
    success = await api.rt.locks.try_lock(
        request.store_name, request.resource_id, request.lock_owner, request.expiry_in_seconds
    )
    return api_v1.TryLockResponse(success=success)


async def unlock(api: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
    status = await api.rt.locks.unlock(request.store_name, request.resource_id, request.lock_owner)
    return api_v1.UnlockResponse(status=int(status))


def _parse(body: bytes, message: Any) -> Any:
    try:
        return json_format.Parse(body or b"{}", message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise malformed(f"failed deserializing HTTP body: {exc}") from exc


def add_http_routes(app: web.Application, locks: LockBlock) -> None:

    async def http_lock(request: web.Request) -> web.Response:
        req = _parse(await request.read(), api_v1.TryLockRequest())
        success = await locks.try_lock(
            request.match_info["store"], req.resource_id, req.lock_owner, req.expiry_in_seconds
        )
        return web.json_response({"success": success})

    async def http_unlock(request: web.Request) -> web.Response:
        req = _parse(await request.read(), api_v1.UnlockRequest())
        status = await locks.unlock(request.match_info["store"], req.resource_id, req.lock_owner)
        return web.json_response({"status": int(status)})

    app.router.add_post(f"{ALPHA}/lock/{{store}}", http_lock)
    app.router.add_post(f"{ALPHA}/unlock/{{store}}", http_unlock)
