"""The interface every state store implements, with Dapr's etag and concurrency rules.

Keys reaching a store are physical keys: the sidecar has already applied the component's
`keyPrefix` rule (`<appId>||key` by default), so a store knows nothing about apps.

ETag rules (as daprd's state.in-memory and state.redis apply them):
- an etag is given and does not match the stored one (or the key is absent) -> EtagMismatch;
- `first-write` with no etag and the key exists -> EtagMismatch;
- no etag and not first-write -> last write wins.
Every write gets a new etag. Etags here are decimal version numbers, as in state.redis; a
non-numeric etag is EtagInvalid.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

Concurrency = Literal["first-write", "last-write"]

FIRST_WRITE: Concurrency = "first-write"
LAST_WRITE: Concurrency = "last-write"

# Capability strings as daprd reports them in metadata.
CAP_ETAG = "ETAG"
CAP_TRANSACTIONAL = "TRANSACTIONAL"
CAP_TTL = "TTL"
CAP_ACTOR = "ACTOR"


class StateStoreError(Exception):
    """A store failed (connection lost, disk full, ...): reported as ERR_STATE_SAVE / ERR_STATE_GET."""


class EtagMismatch(StateStoreError):
    """The etag did not match (or first-write found an existing key): a conflict, not a crash."""


class EtagInvalid(StateStoreError):
    """The etag is not one this store could have issued."""


@dataclass(slots=True)
class StateItem:
    key: str
    value: bytes = b""
    etag: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    concurrency: Concurrency | None = None
    # The HTTP API's `contentType` field (daprd's SetRequest.ContentType): stores ignore it, the
    # transactional outbox publishes the value with it.
    content_type: str | None = None

    @property
    def ttl_seconds(self) -> int | None:
        """`ttlInSeconds` metadata: None = no TTL; <= 0 (Dapr's -1) = never expires."""
        raw = self.metadata.get("ttlInSeconds")
        if raw is None or raw == "":
            return None
        try:
            ttl = int(raw)
        except ValueError as exc:
            raise StateStoreError(f"ttlInSeconds must be an integer, got {raw!r}") from exc
        return ttl if ttl > 0 else None


@dataclass(slots=True)
class GetResult:
    data: bytes
    etag: str
    metadata: dict[str, str] = field(default_factory=dict)  # e.g. ttlExpireTime (RFC3339)


@dataclass(slots=True)
class TransactionOp:
    operation: Literal["upsert", "delete"]
    item: StateItem


def parse_etag(etag: str) -> int:
    try:
        return int(etag)
    except ValueError as exc:
        raise EtagInvalid(f"invalid etag value: {etag!r}") from exc


def check_etag(item_etag: str | None, concurrency: Concurrency | None, current: str | None) -> None:
    """Apply Dapr's etag rules; `current` is the stored etag or None when the key is absent."""
    if item_etag:
        parse_etag(item_etag)
        if current is None or item_etag != current:
            raise EtagMismatch(f"possible etag mismatch. error from state store: etag {item_etag!r}")
    elif concurrency == FIRST_WRITE and current is not None:
        raise EtagMismatch("possible etag mismatch. error from state store: first-write and key exists")


class StateStore(abc.ABC):
    """A Dapr state store component instance (shared by every sidecar in the process that loads it)."""

    capabilities: tuple[str, ...] = (CAP_ETAG, CAP_TRANSACTIONAL, CAP_TTL)

    async def init(self) -> None:  # noqa: B027 - optional hook
        """Connect / create tables. Raise StateStoreError with a clear message on failure."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    @abc.abstractmethod
    async def get(self, key: str) -> GetResult | None:
        """The value, etag and metadata of `key`, or None when absent or expired."""

    async def bulk_get(self, keys: Sequence[str]) -> list[GetResult | None]:
        return [await self.get(k) for k in keys]

    @abc.abstractmethod
    async def set(self, item: StateItem) -> None:
        """Save one item, applying etag/concurrency rules and TTL."""

    @abc.abstractmethod
    async def delete(self, key: str, etag: str | None = None, concurrency: Concurrency | None = None) -> None:
        """Delete one key (absent key without etag is fine), applying etag rules."""

    @abc.abstractmethod
    async def transact(self, ops: Sequence[TransactionOp]) -> None:
        """Apply all ops atomically: if any etag check fails, nothing is written."""

    async def keys_with_prefix(self, prefix: str) -> list[str]:
        """Physical keys starting with prefix (used by localdapr itself, e.g. to reload reminders)."""
        raise NotImplementedError
