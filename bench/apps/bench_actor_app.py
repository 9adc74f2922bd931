"""The app the actor benchmark talks to: `BenchActor` (echo, or echo plus a state save) and a plain
HTTP echo route as the baseline."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from dapr.actor import Actor, ActorInterface, actormethod
from dapr.ext.fastapi import DaprActor
from fastapi import FastAPI, Request, Response


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
    await actor.register_actor(BenchActor)
    yield


app = FastAPI(lifespan=lifespan)
actor = DaprActor(app)


@app.post("/echo")
async def echo(request: Request) -> Response:
    return Response(content=await request.body(), media_type="application/json")
