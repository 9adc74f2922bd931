"""The interface every lock store implements, and daprd's rule for the key a lock is stored under.

A lock is a resource id held by one owner until it is unlocked or its lease (`expiryInSeconds`)
runs out; only the owner can unlock it. Keys reaching a store are already prefixed (`lock_key`).
"""

from __future__ import annotations

import abc
import enum

from localdapr.components.spec import ComponentSpec

KEY_DELIMITER = "||"


class UnlockStatus(enum.IntEnum):
    """dapr.proto.runtime.v1.UnlockResponse.Status (the SDK's UnlockResponseStatus)."""

    SUCCESS = 0
    LOCK_DOES_NOT_EXIST = 1
    LOCK_BELONGS_TO_OTHERS = 2
    INTERNAL_ERROR = 3


class IllegalLockKey(ValueError):
    """A resource id or keyPrefix containing `||`, which daprd refuses."""


def check_key_part(part: str) -> None:
    if KEY_DELIMITER in part:
        raise IllegalLockKey(f"input key/keyPrefix '{part}' can't contain '{KEY_DELIMITER}'")


def lock_key(resource_id: str, store_name: str, app_id: str, strategy: str) -> str:
    """The stored key for `resource_id`, as daprd's GetModifiedLockKey builds it.

    `strategy` is the component's `keyPrefix` lowercased: appid (default) -> `lock||<app>||<id>`,
    name -> `lock||<store>||<id>`, none -> `lock||<id>`, anything else -> `lock||<strategy>||<id>`.
    """
    check_key_part(resource_id)
    match strategy or "appid":
        case "none":
            prefix = ""
        case "name":
            prefix = store_name
        case "appid":
            prefix = app_id
        case literal:
            prefix = literal
    parts = ["lock", prefix, resource_id] if prefix else ["lock", resource_id]
    return KEY_DELIMITER.join(parts)


def key_strategy(spec: ComponentSpec) -> str:
    """The component's `keyPrefix`, lowercased as daprd stores it; one containing `||` fails the load."""
    strategy = spec.get("keyPrefix").lower()
    try:
        check_key_part(strategy)
    except IllegalLockKey as exc:
        raise spec.fail(f"metadata field 'keyPrefix': {exc}") from None
    return strategy


class LockStore(abc.ABC):
    """A lock store component instance (shared by every sidecar in the process that loads it)."""

    key_strategy = "appid"  # the component's keyPrefix, set by from_spec (see lock_key)

    async def init(self) -> None:  # noqa: B027 - optional hook
        """Connect; raise an Exception with a clear message on failure."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    @abc.abstractmethod
    async def try_lock(self, key: str, owner: str, expiry_seconds: int) -> bool:
        """Take the lock for `owner` for `expiry_seconds` unless someone holds it; True when taken."""

    @abc.abstractmethod
    async def unlock(self, key: str, owner: str) -> UnlockStatus:
        """Release the lock if `owner` holds it."""
