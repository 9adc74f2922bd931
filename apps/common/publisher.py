"""Publishing events through Dapr pub/sub, behind a small interface services depend on."""

from __future__ import annotations

import json
from typing import Protocol

from dapr.aio.clients import DaprClient
from pydantic import BaseModel

from apps.common.names import PUBSUB


class Publisher(Protocol):
    async def publish(self, topic: str, event: BaseModel | dict) -> None: ...


class DaprPublisher:
    def __init__(self, client: DaprClient, pubsub: str = PUBSUB) -> None:
        self.client = client
        self.pubsub = pubsub

    async def publish(self, topic: str, event: BaseModel | dict) -> None:

        data = event.model_dump_json() if isinstance(event, BaseModel) else json.dumps(event)
        # data_content_type makes subscribers receive a JSON object, not a string (contract Q8).
        await self.client.publish_event(self.pubsub, topic, data, data_content_type="application/json")
