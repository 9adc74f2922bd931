"""Publishing events through Dapr pub/sub, behind a small interface services depend on."""

from __future__ import annotations

import json
import math
from typing import Any, Protocol

from dapr.aio.clients import DaprClient
from pydantic import BaseModel

from apps.common.names import PUBSUB


def json_safe(item: Any) -> Any:
    """`item` as standard JSON can carry it: a non-finite number (often the reason a reading was
    rejected) becomes its text, "inf" or "nan", so an event or an error body is valid JSON for every
    subscriber, broker and client instead of carrying `Infinity`, which receivers refuse."""
    if isinstance(item, float) and not math.isfinite(item):
        return repr(item)
    if isinstance(item, dict):
        return {key: json_safe(value) for key, value in item.items()}
    if isinstance(item, list):
        return [json_safe(value) for value in item]
    return item


def event_json(event: BaseModel | dict) -> str:
    """The JSON text an event is published as."""
    return event.model_dump_json() if isinstance(event, BaseModel) else json.dumps(event)


class Publisher(Protocol):
    async def publish(self, topic: str, event: BaseModel | dict) -> None: ...


class DaprPublisher:
    def __init__(self, client: DaprClient, pubsub: str = PUBSUB) -> None:
        self.client = client
        self.pubsub = pubsub

    async def publish(self, topic: str, event: BaseModel | dict) -> None:
        data = event_json(event)
        # data_content_type makes subscribers receive a JSON object, not a string (contract Q8).
        await self.client.publish_event(self.pubsub, topic, data, data_content_type="application/json")
