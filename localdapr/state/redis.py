"""state.redis: state in a real Redis, in daprd's layout, so localdapr and daprd can share one server.

Each key is a hash with fields `data` (the value bytes) and `version` (the etag, an integer that
every write increments), as components-contrib's `state/redis` stores it. TTL is the key's Redis
expiry. Every write, single or transactional, is one Lua script: the etag checks of all operations
run first and nothing is written unless all pass, so a transaction is all-or-nothing even when
several sidecars (or daprd) write concurrently.

Metadata: `redisHost` (required, host:port), `redisPassword`, `redisUsername`, `redisDB`,
`enableTLS`, `ttlInSeconds` (a default TTL for every write).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from localdapr.components.spec import ComponentSpec
from localdapr.redisconn import RedisConnections
from localdapr.state.base import (
    FIRST_WRITE,
    Concurrency,
    EtagMismatch,
    GetResult,
    StateItem,
    StateStore,
    StateStoreError,
    TransactionOp,
    parse_etag,
)
from localdapr.state.memory import rfc3339

# ARGV per operation, 5 at a time: kind ("u"/"d"), etag ("" = none), first-write ("1"/"0"), value, ttl.
_WRITE_SCRIPT = """
local n = #KEYS
for i = 1, n do
  local base = (i - 1) * 5
  local etag, first = ARGV[base + 2], ARGV[base + 3]
  local current = redis.call('HGET', KEYS[i], 'version')
  if etag ~= '' then
    if (not current) or current ~= etag then
      return redis.error_reply('ETAG_MISMATCH ' .. KEYS[i])
    end
  elseif first == '1' and current then
    return redis.error_reply('ETAG_MISMATCH ' .. KEYS[i])
  end
end
for i = 1, n do
  local base = (i - 1) * 5
  if ARGV[base + 1] == 'd' then
    redis.call('DEL', KEYS[i])
  else
    redis.call('HSET', KEYS[i], 'data', ARGV[base + 4])
    redis.call('HINCRBY', KEYS[i], 'version', 1)
    local ttl = tonumber(ARGV[base + 5])
    if ttl > 0 then
      redis.call('EXPIRE', KEYS[i], ttl)
    else
      redis.call('PERSIST', KEYS[i])
    end
  end
end
return n
"""


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


class RedisStateStore(StateStore):
    def __init__(self, connections: RedisConnections, default_ttl: int | None = None) -> None:
        self.connections = connections
        self.default_ttl = default_ttl

    @classmethod
    def from_spec(cls, spec: ComponentSpec) -> RedisStateStore:
        # -1 (or 0) means "no expiry", as for the per-request ttlInSeconds.
        return cls(RedisConnections.from_spec(spec), spec.get_int("ttlInSeconds", 0, -1) or None)

    @property
    def address(self) -> str:
        return self.connections.address

    async def init(self) -> None:
        await self.connections.connect()

    async def close(self) -> None:
        await self.connections.close()

    @property
    def client(self) -> aioredis.Redis:
        try:
            return self.connections.client()
        except RuntimeError as exc:
            raise StateStoreError(str(exc)) from None

    # ------------------------------------------------------------------ interface
    async def get(self, key: str) -> GetResult | None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.hmget(key, "data", "version")
            pipe.pttl(key)
            (data, version), pttl = await pipe.execute()
        if version is None:
            return None
        metadata = {"ttlExpireTime": rfc3339(time.time() + pttl / 1000)} if pttl and pttl > 0 else {}
        return GetResult(data=bytes(data or b""), etag=version.decode(), metadata=metadata)

    async def bulk_get(self, keys: Sequence[str]) -> list[GetResult | None]:
        if not keys:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(key, "data", "version")
            rows = await pipe.execute()
        return [
            None if version is None else GetResult(data=bytes(data or b""), etag=version.decode())
            for data, version in rows
        ]

    async def set(self, item: StateItem) -> None:
        await self.transact([TransactionOp("upsert", item)])

    async def delete(self, key: str, etag: str | None = None, concurrency: Concurrency | None = None) -> None:
        await self.transact([TransactionOp("delete", StateItem(key=key, etag=etag, concurrency=concurrency))])

    async def transact(self, ops: Sequence[TransactionOp]) -> None:
        if not ops:
            return
        keys: list[str] = []
        args: list[bytes | str] = []
        for op in ops:
            item = op.item
            if item.etag:
                parse_etag(item.etag)  # EtagInvalid before anything reaches Redis
            ttl = item.ttl_seconds if "ttlInSeconds" in item.metadata else self.default_ttl
            keys.append(item.key)
            args += [
                "d" if op.operation == "delete" else "u",
                item.etag or "",
                "1" if item.concurrency == FIRST_WRITE else "0",
                item.value,
                str(ttl or 0),
            ]
        try:
            # EVALSHA with a fallback to EVAL: the script object caches its SHA per server.
            await self.client.register_script(_WRITE_SCRIPT)(keys=keys, args=args)
        except ResponseError as exc:
            if str(exc).startswith("ETAG_MISMATCH"):
                raise EtagMismatch(f"possible etag mismatch. error from state store: {exc}") from None
            raise

    async def keys_with_prefix(self, prefix: str) -> list[str]:
        return [k.decode() async for k in self.client.scan_iter(match=_glob_escape(prefix) + "*", count=500)]
