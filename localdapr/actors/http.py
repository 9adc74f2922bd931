"""The actor part of the Dapr HTTP API (`/v1.0/actors/...`, contract 3.1 and 3.2)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web
from multidict import CIMultiDict

from localdapr.errors import malformed

if TYPE_CHECKING:
    from localdapr.actors.errors import ActorReply
    from localdapr.actors.runtime import ActorSubsystem

BASE = "/v1.0/actors/{actor_type}/{actor_id}"


def _body(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise malformed(f"failed deserializing request body: {exc}") from exc


def _response(reply: ActorReply) -> web.Response:
    return web.Response(status=reply.status, body=reply.body, headers={"Content-Type": reply.content_type})


def _no_separator(what: str, value: str) -> str:
    # Actor state keys and reminder keys are joined with '||' (`app||type||id||key`,
    # `actors||type||id||reminder||name`): a part holding one would read or overwrite another actor's
    # data, so daprd refuses such parts and so does this API, before any store is touched.
    if "||" in value:
        raise malformed(f"{what} '{value}' can't contain '||'")
    return value


def add_routes(app: web.Application, actors: ActorSubsystem) -> None:
    def ids(request: web.Request) -> tuple[str, str]:
        return (
            _no_separator("actor type", request.match_info["actor_type"]),
            _no_separator("actor id", request.match_info["actor_id"]),
        )

    async def invoke(request: web.Request) -> web.Response:
        actor_type, actor_id = ids(request)
        reply = await actors.router.invoke(
            actor_type,
            actor_id,
            request.match_info["method"],
            await request.read(),
            CIMultiDict(request.headers),
        )
        return _response(reply)

    async def transaction(request: web.Request) -> web.Response:
        actor_type, actor_id = ids(request)
        await actors.state.transact(actor_type, actor_id, _body(await request.read()))
        return web.Response(status=204)

    async def get_state(request: web.Request) -> web.Response:
        actor_type, actor_id = ids(request)
        data = await actors.state.get(actor_type, actor_id, request.match_info["key"])
        if data is None:
            return web.Response(status=204)
        return web.Response(status=200, body=data, content_type="application/json")

    async def routed(request: web.Request, kind: str) -> web.Response:
        """Reminders and timers belong to the sidecar that owns the actor id: forward if not ours."""
        actor_type, actor_id = ids(request)
        name = _no_separator(f"{kind[:-1]} name", request.match_info["name"])
        raw = await request.read()
        headers = CIMultiDict(request.headers)
        owner = await actors.router.owner_or_none(actor_type, actor_id, headers)
        if owner is not None:
            tail = f"{kind}/{name}"
            return _response(
                await actors.router.forward(owner, tail, request.method, actor_type, actor_id, raw, headers)
            )
        if kind == "reminders":
            if request.method in ("PUT", "POST"):
                await actors.reminders.register(actor_type, actor_id, name, _body(raw))
            elif request.method == "DELETE":
                await actors.reminders.unregister(actor_type, actor_id, name)
            else:
                found = await actors.reminders.get(actor_type, actor_id, name)
                if found is None:
                    return web.Response(status=204)
                return web.json_response(found)
        elif request.method in ("PUT", "POST"):
            await actors.timers.register(actor_type, actor_id, name, _body(raw))
        else:
            await actors.timers.unregister(actor_type, actor_id, name)
        return web.Response(status=204)

    async def reminders(request: web.Request) -> web.Response:
        return await routed(request, "reminders")

    async def timers(request: web.Request) -> web.Response:
        return await routed(request, "timers")

    for verb in ("GET", "POST", "PUT", "DELETE"):
        app.router.add_route(verb, f"{BASE}/method/{{method:.*}}", invoke)
        app.router.add_route(verb, f"{BASE}/reminders/{{name}}", reminders)
    for verb in ("PUT", "POST"):
        app.router.add_route(verb, f"{BASE}/state", transaction)
    for verb in ("PUT", "POST", "DELETE"):
        app.router.add_route(verb, f"{BASE}/timers/{{name}}", timers)
    app.router.add_get(f"{BASE}/state/{{key}}", get_state)
