"""The app the actor benchmark talks to: `BenchActor` (echo, or echo plus a state save) and a plain
HTTP echo route as the baseline.

BENCH_ACTOR_APP_STACK=equipment (the default) serves actor calls as the equipment app does (actor
callbacks by `ActorCallShortcut`, arguments decoded by `ActorSerializer`, state saves through
the pooled actor client); `sdk` with the SDK's
`DaprActor` routes and its own client alone."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from dapr.actor import Actor, ActorInterface, actormethod
from dapr.ext.fastapi import DaprActor
from fastapi import FastAPI, Request, Response

from apps.common.actorcalls import ActorCallShortcut
from apps.common.actorjson import ActorSerializer
from apps.common.daprhttp import PooledDaprActorHttpClient

EQUIPMENT_STACK = os.environ.get("BENCH_ACTOR_APP_STACK", "equipment") == "equipment"
SERIALIZER = ActorSerializer()  # messages and state, as the equipment app registers its actor


class BenchActorInterface(ActorInterface):
    @actormethod(name="Echo")
    async def echo(self, value: Any) -> Any: ...

    @actormethod(name="Save")
    async def save(self, value: Any) -> Any: ...


class BenchActor(Actor, BenchActorInterface):
    async def echo(self, value: Any) -> Any:
        return value

    async def save(self, value: Any) -> Any:
        # Saved by the SDK at the end of the turn: one actor state transaction per call.
        await self._state_manager.set_state("last", value)
        return value


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    if not EQUIPMENT_STACK:
        await actor.register_actor(BenchActor)
        yield
        return
    client = PooledDaprActorHttpClient()
    await actor.register_actor(
        BenchActor, message_serializer=SERIALIZER, state_serializer=SERIALIZER, actor_client=client
    )
    yield
    await client.close()


app = FastAPI(lifespan=lifespan)
if EQUIPMENT_STACK:
    app.add_middleware(ActorCallShortcut)
actor = DaprActor(app)


@app.post("/echo")
async def echo(request: Request) -> Response:
    return Response(content=await request.body(), media_type="application/json")
