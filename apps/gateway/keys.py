"""API keys without HTTP: minting, salted hashes, verification, revocation, and a verified-key cache.

A key is `vgl_<id>_<secret>`: the id (12 hex digits, not secret) finds the record, the secret (256 bits)
is checked against the record's scrypt hash in constant time. Only records are stored, never a key: the
plain key is printed once when it is made and cannot be recovered. All records live in one document in
the Dapr state store (`KeyStore`), written with its etag so that two writers cannot lose each other's
change. A key that verified is cached for `cache_seconds` under a keyed digest of the whole key, so a
request costs one scrypt only on a cache miss, and a revocation reaches every replica within that time
(at once on the replica that made it).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import time
from base64 import b64decode, b64encode
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Generic, Literal, Protocol, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field

Scope = Literal["ingest", "read", "operate", "admin"]
SCOPES: Final[tuple[str, ...]] = get_args(Scope)
SCOPE_MEANING: Final = {
    "ingest": "send readings (gateways and devices)",
    "read": "read the fleet, machines, alerts, models, jobs and the archive's backlog",
    "operate": "acknowledge and resolve alerts, retire machines, record equipment events, promote and "
    "roll back models",
    "admin": "train and manage models, flush the archive, manage API keys",
}
KEY_PREFIX: Final = "vgl"
KEY_ID_PATTERN: Final = r"^[0-9a-f]{12}$"
_TOKEN = re.compile(r"^vgl_(?P<id>[0-9a-f]{12})_(?P<secret>[A-Za-z0-9_-]{43})$")
# scrypt's recommended interactive cost (N=2**14, r=8, p=1): ~50 ms and 16 MiB per verification.
SCRYPT_N: Final = 2**14
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
MAX_CONFLICT_RETRIES: Final = 10
T = TypeVar("T")


class KeyRecord(BaseModel):
    """What is stored for a key: its hash, never the key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=KEY_ID_PATTERN)
    name: str = Field(min_length=1, max_length=64)
    scopes: list[Scope]
    salt: str = Field(description="base64 scrypt salt (16 bytes)")
    hash: str = Field(description="base64 scrypt digest (32 bytes)")
    n: int = SCRYPT_N
    r: int = SCRYPT_R
    p: int = SCRYPT_P
    created_at: datetime
    revoked_at: datetime | None = None


class KeyRing(BaseModel):
    """Every key record, by id: the one document the key store keeps."""

    model_config = ConfigDict(extra="forbid")

    keys: dict[str, KeyRecord] = Field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Versioned(Generic[T]):
    value: T
    etag: str | None  # None: the document does not exist yet


class Conflict(Exception):
    """Someone else wrote the key ring since it was read: read again and redo the change."""


class KeyStore(Protocol):
    async def load(self) -> Versioned[KeyRing]: ...

    async def save(self, ring: KeyRing, etag: str | None) -> None:
        """Write the ring if it is still at `etag` (None: only if it does not exist); else Conflict."""


class KeyNotFound(LookupError):
    pass


class KeyStoreUnavailable(Exception):
    """The store behind the keys did not answer: nothing can be authenticated or changed (503)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request comes from: a key that verified and is not revoked."""

    key_id: str
    name: str
    scopes: frozenset[str]


def _digest(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode(), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)


def mint(
    name: str, scopes: Iterable[Scope], now: datetime, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P
) -> tuple[str, KeyRecord]:
    """A new key (to show once) and the record to store."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    salt = secrets.token_bytes(16)
    record = KeyRecord(
        id=key_id,
        name=name,
        scopes=sorted(set(scopes), key=SCOPES.index),
        salt=b64encode(salt).decode(),
        hash=b64encode(_digest(secret, salt, n, r, p)).decode(),
        n=n,
        r=r,
        p=p,
        created_at=now,
    )
    return f"{KEY_PREFIX}_{key_id}_{secret}", record


def split_key(presented: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed key, else None (never an exception: it is attacker input)."""
    match = _TOKEN.match(presented)
    return (match["id"], match["secret"]) if match else None


def verify(record: KeyRecord, secret: str) -> bool:
    expected = b64decode(record.hash)
    return hmac.compare_digest(
        _digest(secret, b64decode(record.salt), record.n, record.r, record.p), expected
    )


class KeyService:
    """Create, list, revoke keys; authenticate a presented key (with the verified-key cache)."""

    def __init__(
        self,
        store: KeyStore,
        cache_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        cost: tuple[int, int, int] = (SCRYPT_N, SCRYPT_R, SCRYPT_P),
    ) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self.clock = clock
        self.cost = cost
        self._pepper = secrets.token_bytes(32)  # the cache's keys mean nothing outside this process
        self._verified: dict[bytes, tuple[Principal, float]] = {}

    async def _change(self, change: Callable[[KeyRing], T]) -> T:
        for _ in range(MAX_CONFLICT_RETRIES):
            current = await self.store.load()
            ring = current.value.model_copy(deep=True)
            result = change(ring)
            try:
                await self.store.save(ring, current.etag)
            except Conflict:
                continue
            return result
        raise Conflict(f"the key ring kept changing under {MAX_CONFLICT_RETRIES} attempts")

    async def create(
        self, name: str, scopes: Iterable[Scope], now: datetime | None = None
    ) -> tuple[str, KeyRecord]:
        key, record = mint(name, scopes, now or datetime.now(UTC), *self.cost)

        def add(ring: KeyRing) -> None:
            ring.keys[record.id] = record

        await self._change(add)
        return key, record

    async def list(self) -> list[KeyRecord]:
        ring = (await self.store.load()).value
        return sorted(ring.keys.values(), key=lambda r: (r.created_at, r.id))

    async def revoke(self, key_id: str, now: datetime | None = None) -> KeyRecord:
        when = now or datetime.now(UTC)

        def mark(ring: KeyRing) -> KeyRecord:
            record = ring.keys.get(key_id)
            if record is None:
                raise KeyNotFound(f"no API key {key_id!r}")
            if record.revoked_at is None:
                record = record.model_copy(update={"revoked_at": when})
                ring.keys[key_id] = record
            return record

        record = await self._change(mark)
        self._verified = {k: v for k, v in self._verified.items() if v[0].key_id != key_id}
        return record

    def _cache_key(self, presented: str) -> bytes:
        return hmac.digest(self._pepper, presented.encode(errors="replace"), "sha256")

    def cached(self, presented: str) -> Principal | None:
        """The principal of a key verified less than `cache_seconds` ago (no store read, no scrypt)."""
        found = self._verified.get(self._cache_key(presented))
        return found[0] if found is not None and found[1] > self.clock() else None

    async def authenticate(self, presented: str) -> Principal | None:
        """The key's principal, or None for anything that is not a valid, unrevoked key."""
        principal = self.cached(presented)
        if principal is not None:
            return principal
        parts = split_key(presented)
        if parts is None:
            return None
        key_id, secret = parts
        record = (await self.store.load()).value.keys.get(key_id)
        if record is None or record.revoked_at is not None:
            return None
        # scrypt is deliberately slow: off the event loop, so other requests go on meanwhile.
        if not await asyncio.to_thread(verify, record, secret):
            return None
        principal = Principal(record.id, record.name, frozenset(record.scopes))
        if len(self._verified) > 10_000:  # bounded: a flood of distinct valid keys cannot grow it
            self._verified.clear()
        self._verified[self._cache_key(presented)] = (principal, self.clock() + self.cache_seconds)
        return principal
