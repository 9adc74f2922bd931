"""The interface every configuration store implements.

A store maps keys to items (value, version, metadata). `get` with no keys returns every item. A
subscription calls its handler with the items that changed (a deleted key comes as an item with an
empty value, as components-contrib sends it) until it is unsubscribed.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

Items = dict[str, "ConfigurationItem"]
UpdateHandler = Callable[[Items], Awaitable[None]]


@dataclass(slots=True)
class ConfigurationItem:
    value: str = ""
    version: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        """contrib's Item as daprd encodes it over HTTP (Go `omitempty` on every field)."""
        out: dict[str, object] = {}
        if self.value:
            out["value"] = self.value
        if self.version:
            out["version"] = self.version
        if self.metadata:
            out["metadata"] = self.metadata
        return out


class UnknownSubscription(KeyError):
    """Unsubscribe with an id the store does not know."""


class ConfigurationStore(abc.ABC):
    """A configuration store component instance (shared by every sidecar in the process that loads it)."""

    async def init(self) -> None:  # noqa: B027 - optional hook
        """Connect; raise an Exception with a clear message on failure."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Stop every subscription and release connections."""

    @abc.abstractmethod
    async def get(self, keys: Sequence[str], metadata: Mapping[str, str]) -> Items:
        """The items of `keys` that exist (every item when `keys` is empty)."""

    @abc.abstractmethod
    async def subscribe(
        self, keys: Sequence[str], metadata: Mapping[str, str], handler: UpdateHandler
    ) -> str:
        """Watch `keys` (every key when empty); the subscription is live when its id is returned."""

    @abc.abstractmethod
    async def unsubscribe(self, subscription_id: str) -> None:
        """Stop a subscription; UnknownSubscription when there is none with that id."""
