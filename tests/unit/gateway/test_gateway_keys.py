"""API keys without HTTP: only salted hashes are stored, a key verifies in constant time against its own
record, revocation wins over the cache on the replica that made it, and concurrent writers lose nothing."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from apps.gateway.keys import KeyNotFound, KeyService, mint, split_key, verify
from tests.unit.gateway.fakes import InMemoryKeyStore

CHEAP = (2**4, 1, 1)  # scrypt cost for tests; the records carry their own parameters
NOW = datetime(2024, 1, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def service(store: InMemoryKeyStore, clock: Clock | None = None) -> KeyService:
    return KeyService(store, cache_seconds=10.0, clock=clock or Clock(), cost=CHEAP)


def test_a_minted_key_verifies_and_its_record_holds_no_key() -> None:
    key, record = mint("line-3", ["read", "ingest"], NOW, *CHEAP)
    key_id, secret = split_key(key) or ("", "")
    assert key_id == record.id and key.startswith(f"vgl_{record.id}_")
    assert verify(record, secret) and not verify(record, secret[:-1] + ("A" if secret[-1] != "A" else "B"))
    stored = record.model_dump_json()
    assert secret not in stored and key not in stored
    assert record.scopes == ["ingest", "read"]  # in SCOPES order, once each


@pytest.mark.parametrize("presented", ["", "vgl_", "Bearer x", "vgl_zzzzzzzzzzzz_" + "a" * 43, "x" * 10_000])
async def test_malformed_keys_are_refused_without_a_store_read(presented: str) -> None:
    store = InMemoryKeyStore()
    store.down = True  # a read would raise: a malformed key must not need one
    assert await service(store).authenticate(presented) is None


async def test_create_authenticate_and_revoke() -> None:
    store = InMemoryKeyStore()
    keys = service(store)
    key, record = await keys.create("dashboard", ["read", "operate"])
    principal = await keys.authenticate(key)
    assert principal is not None and principal.name == "dashboard" and principal.scopes == {"read", "operate"}
    assert keys.cached(key) == principal
    revoked = await keys.revoke(record.id)
    assert revoked.revoked_at is not None
    assert keys.cached(key) is None and await keys.authenticate(key) is None
    assert [r.id for r in await keys.list()] == [record.id]
    with pytest.raises(KeyNotFound):
        await keys.revoke("0123456789ab")


async def test_a_revocation_elsewhere_reaches_this_replica_once_its_cache_expires() -> None:
    store, clock = InMemoryKeyStore(), Clock()
    here, other = service(store, clock), service(store, clock)
    key, record = await other.create("device", ["ingest"])
    assert await here.authenticate(key) is not None
    await other.revoke(record.id)
    assert await here.authenticate(key) is not None  # cached: within cache_seconds
    clock.now += 11
    assert await here.authenticate(key) is None


async def test_concurrent_creations_all_land_despite_conflicts() -> None:
    store = InMemoryKeyStore()
    store.conflicts_to_inject = 3
    keys = service(store)
    made = await asyncio.gather(*(keys.create(f"k{i}", ["read"]) for i in range(5)))
    assert {r.id for r in await keys.list()} == {record.id for _, record in made}
