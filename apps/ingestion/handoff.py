"""The archive hand-off of many requests in one message: readings the actors took, from requests that
finish close together, are published to readings-accepted together.

Every request used to publish its own message, and the archiver stages each message in the state
store: with one reading per request that was a publish, a delivery and a state write per reading.
Here a request's readings join the message being gathered (up to `max_readings`, at most
`linger_seconds` after the first joined, or for as long as the previous message is being published)
and the request goes on only when that message was published; if the publish fails, every request in
it hears so and tells its sender to send those readings again, as before.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from apps.common.publisher import Publisher


@dataclass
class _Message:
    opened: float
    readings: list[Any] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


def _as_dict(readings: list[Any]) -> dict[str, Any]:
    return {"readings": readings}


class GroupedHandOff:
    """`message`: the event published for the gathered readings (by default {"readings": [...]} of
    JSON-ready readings; the service gives Reading models, written to JSON by pydantic)."""

    def __init__(
        self,
        publisher: Publisher,
        topic: str,
        linger_seconds: float,
        max_readings: int,
        message: Callable[[list[Any]], BaseModel | dict[str, Any]] = _as_dict,
    ) -> None:
        self.publisher = publisher
        self.topic = topic
        self.linger = linger_seconds
        self.max_readings = max_readings
        self.message = message
        self._gathering: _Message | None = None
        self._queue: list[_Message] = []
        self._worker: asyncio.Task[None] | None = None

    async def send(self, readings: list[Any]) -> None:
        """Publish `readings` (at most `max_readings`) in a message; raises if it failed."""
        loop = asyncio.get_running_loop()
        message = self._gathering
        if message is None or len(message.readings) + len(readings) > self.max_readings:
            message = self._gathering = _Message(loop.time())
            self._queue.append(message)
        message.readings += readings
        done: asyncio.Future[None] = loop.create_future()
        message.waiters.append(done)
        if self._worker is None:
            self._worker = asyncio.create_task(self._drain())
        await asyncio.shield(done)

    async def _drain(self) -> None:
        try:
            while self._queue:
                message = self._queue[0]
                wait = message.opened + self.linger - asyncio.get_running_loop().time()
                if wait > 0:
                    await asyncio.sleep(wait)
                if self._gathering is message:
                    self._gathering = None  # closed: what comes now goes in the next message
                try:
                    await self.publisher.publish(self.topic, self.message(message.readings))
                except Exception as exc:
                    for waiter in message.waiters:
                        if not waiter.done():
                            waiter.set_exception(exc)
                else:
                    for waiter in message.waiters:
                        if not waiter.done():
                            waiter.set_result(None)
                self._queue.pop(0)
        except asyncio.CancelledError:
            for message in self._queue:
                for waiter in message.waiters:
                    if not waiter.done():
                        waiter.set_exception(ConnectionAbortedError("ingestion is shutting down"))
            raise
        finally:
            self._worker = None

    async def close(self) -> None:
        worker = self._worker
        if worker is not None:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
