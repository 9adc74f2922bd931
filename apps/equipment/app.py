"""HTTP and Dapr wiring of the equipment service: hosts EquipmentActor; logic is in actor.py/domain.py."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from datetime import timedelta

from dapr.actor.runtime.config import ActorRuntimeConfig
from dapr.actor.runtime.runtime import ActorRuntime
from dapr.ext.fastapi import DaprActor
from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from apps.common.actorcalls import ActorCallShortcut
from apps.common.actorjson import ActorSerializer
from apps.common.apptoken import AppTokenGuard
from apps.common.daprhttp import PooledDaprActorHttpClient, close_invocation, pool_invocation
from apps.common.gctuning import tune_garbage_collector
from apps.common.httpguard import RequestGuard
from apps.common.metrics import instrument
from apps.common.names import TOPIC_EQUIPMENT_HEALTH
from apps.common.nativetelemetry import TELEMETRY_OFF
from apps.common.publisher import DaprPublisher, Publisher
from apps.common.tracecontext import dapr_client
from apps.equipment.actor import EquipmentActor
from apps.equipment.coalesce import CoalescingInference
from apps.equipment.healthpub import CoalescingPublisher
from apps.equipment.ports import ActorDeps, DaprInferenceClient
from apps.equipment.settings import get_settings


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = get_settings()
    ActorRuntime.set_actor_config(
        ActorRuntimeConfig(actor_idle_timeout=timedelta(seconds=settings.actor_idle_timeout_seconds))
    )
    actor_client = PooledDaprActorHttpClient()
    async with dapr_client() as client:
        pool_invocation(client)
        # Concurrent actors' rows share inference requests (coalesce.py).
        inference = CoalescingInference(
            DaprInferenceClient(client), settings.inference_max_rows, settings.inference_in_flight
        )
        publisher: Publisher = DaprPublisher(client)
        if settings.health_publish_linger_ms > 0:
            # Concurrent actors' health snapshots share bulk publishes (healthpub.py).
            publisher = CoalescingPublisher(
                client,
                publisher,
                [TOPIC_EQUIPMENT_HEALTH],
                settings.health_publish_linger_ms / 1000,
                settings.health_publish_max_batch,
            )
        deps = ActorDeps(inference, publisher, settings, started_at=time.time())
        # Calls' arguments, reminders' bodies and the state decoded by orjson, as the SDK decodes them,
        # and the state text and answers encoded by it, as the SDK encodes them (actorjson.py).
        serializer = ActorSerializer()
        await actor.register_actor(
            EquipmentActor,
            message_serializer=serializer,
            state_serializer=serializer,
            actor_factory=EquipmentActor.factory(deps),
            actor_client=actor_client,
        )
        try:
            tune_garbage_collector()  # the app is up: what it holds now stays (gctuning.py)
            yield
        finally:
            if isinstance(publisher, CoalescingPublisher):
                await publisher.close()
            await inference.close()
            await close_invocation(client)
            await actor_client.close()


app = FastAPIOffline(telemetry=TELEMETRY_OFF, title="Vigil equipment", lifespan=lifespan)
# Innermost: actor calls skip FastAPI's routing (actorcalls.py), after the token check and counting.
app.add_middleware(ActorCallShortcut)
app.add_middleware(RequestGuard)
app.add_middleware(AppTokenGuard)  # outside RequestGuard: refused before any parsing
instrument(app)  # added last: outermost, every answer counted
# DaprActor adds the actor routes and GET /healthz (the sidecar's app health check) itself.
actor = DaprActor(app)
