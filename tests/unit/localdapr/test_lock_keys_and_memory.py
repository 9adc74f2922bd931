"""Lock keys as daprd builds them, and lock.in-memory's owners and leases (a fake clock, no waiting)."""

from __future__ import annotations

from pathlib import Path

import pytest

from localdapr.components.spec import ComponentSpec, MetadataEntry
from localdapr.errors import ComponentError
from localdapr.lock.base import IllegalLockKey, UnlockStatus, key_strategy, lock_key
from localdapr.lock.memory import InMemoryLockStore


def test_lock_key_strategies() -> None:
    assert lock_key("order-1", "lockstore", "app", "") == "lock||app||order-1"
    assert lock_key("order-1", "lockstore", "app", "appid") == "lock||app||order-1"
    assert lock_key("order-1", "lockstore", "app", "name") == "lock||lockstore||order-1"
    assert lock_key("order-1", "lockstore", "app", "none") == "lock||order-1"
    assert lock_key("order-1", "lockstore", "app", "shared") == "lock||shared||order-1"
    with pytest.raises(IllegalLockKey, match=r"input key/keyPrefix 'a\|\|b' can't contain '\|\|'"):
        lock_key("a||b", "lockstore", "app", "")


def spec(key_prefix: str) -> ComponentSpec:
    s = ComponentSpec(
        "lockstore", "lock.in-memory", "v1", [MetadataEntry("keyPrefix")], [], None, Path("l.yaml")
    )
    s.metadata = {"keyPrefix": key_prefix}
    return s


def test_key_prefix_is_lowercased_and_checked_as_daprd_does() -> None:
    assert key_strategy(spec("Shared")) == "shared"
    assert InMemoryLockStore.from_spec(spec("NAME")).key_strategy == "name"
    with pytest.raises(ComponentError, match=r"l.yaml.*keyPrefix.*can't contain"):
        key_strategy(spec("x||y"))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_owner_rules() -> None:
    store = InMemoryLockStore()
    assert await store.try_lock("k", "alice", 10)
    assert not await store.try_lock("k", "bob", 10)
    assert not await store.try_lock("k", "alice", 10)  # held, even by the same owner (SET NX)
    assert await store.unlock("k", "bob") is UnlockStatus.LOCK_BELONGS_TO_OTHERS
    assert await store.unlock("k", "alice") is UnlockStatus.SUCCESS
    assert await store.unlock("k", "alice") is UnlockStatus.LOCK_DOES_NOT_EXIST
    assert await store.try_lock("k", "bob", 10)


async def test_lease_expires() -> None:
    clock = Clock()
    store = InMemoryLockStore(clock)
    assert await store.try_lock("k", "alice", 5)
    clock.now += 4.999
    assert not await store.try_lock("k", "bob", 5)
    clock.now += 0.001
    assert await store.unlock("k", "alice") is UnlockStatus.LOCK_DOES_NOT_EXIST
    assert await store.try_lock("k", "bob", 5)
    assert await store.unlock("k", "alice") is UnlockStatus.LOCK_BELONGS_TO_OTHERS
