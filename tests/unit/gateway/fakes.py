"""In-memory stand-ins for what the gateway reaches through its sidecar: the services, the actors and
the key store (with the same etag rule as the Dapr one)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from apps.common.contracts import HealthSnapshot
from apps.gateway.keys import Conflict, KeyRing, KeyStoreUnavailable, Versioned
from apps.gateway.ports import Answer, UpstreamUnavailable


@dataclass
class Call:
    app_id: str
    path: str
    verb: str
    query: list[tuple[str, str]]
    body: bytes
    headers: dict[str, str]


@dataclass
class FakeUpstream:
    """Answers by (app_id, path): an Answer, an exception to raise, or a delay (seconds) to hang."""

    answers: dict[tuple[str, str], Answer | Exception | float] = field(default_factory=dict)
    healths: dict[str, HealthSnapshot] = field(default_factory=dict)
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    actors_down: bool = False
    calls: list[Call] = field(default_factory=list)
    # The answer to a call without one in `answers` (default: 200 `{}`).
    otherwise: Callable[[Call], Answer] = lambda call: Answer(200, b"{}")

    async def call(
        self,
        app_id: str,
        path: str,
        *,
        verb: str = "GET",
        query: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
    ) -> Answer:
        call = Call(app_id, path, verb, list(query), body, dict(headers))
        self.calls.append(call)
        found = self.answers.get((app_id, path)) or self.otherwise(call)
        if isinstance(found, Exception):
            raise found
        if isinstance(found, float):
            await asyncio.sleep(found)
            return Answer(200, b"{}")
        return found

    async def health(self, equipment_id: str) -> HealthSnapshot | None:
        if self.actors_down:
            raise UpstreamUnavailable("equipment: connection refused")
        return self.healths.get(equipment_id)

    async def history(self, equipment_id: str, n: int) -> list[dict[str, Any]]:
        if self.actors_down:
            raise UpstreamUnavailable("equipment: connection refused")
        return self.histories.get(equipment_id, [])[-n:]

    async def close(self) -> None:
        pass


class InMemoryKeyStore:
    def __init__(self) -> None:
        self.doc: str | None = None
        self.version = 0
        self.down = False
        self.conflicts_to_inject = 0

    async def load(self) -> Versioned[KeyRing]:
        if self.down:
            raise KeyStoreUnavailable("state store down")
        await asyncio.sleep(0)
        if self.doc is None:
            return Versioned(KeyRing(), None)
        return Versioned(KeyRing.model_validate_json(self.doc), str(self.version))

    async def save(self, ring: KeyRing, etag: str | None) -> None:
        if self.down:
            raise KeyStoreUnavailable("state store down")
        if self.conflicts_to_inject:
            self.conflicts_to_inject -= 1
            raise Conflict("injected")
        if etag != (None if self.doc is None else str(self.version)):
            raise Conflict(f"etag {etag} is not {self.version}")
        self.doc = ring.model_dump_json()
        self.version += 1
