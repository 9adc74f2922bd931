"""lock.redis: locks in a real Redis, as components-contrib's standalone Redis lock stores them.

A lock is a plain key holding the owner, taken with one `SET key owner NX PX <ms>` (atomic: of two
sidecars racing, exactly one gets it; the lease is the key's expiry). Unlock is one Lua script that
compares the owner and deletes only on a match, so a lock that expired and was taken by someone else
is never released by its former owner. Like contrib, it refuses Sentinel failover and a server with
replicas (a lock written to a primary can be lost on failover).

Metadata: `redisHost` (required), `redisPassword`, `redisUsername`, `redisDB`, `enableTLS`, and
daprd's `keyPrefix` (see lock/base.py).
"""

from __future__ import annotations

from localdapr.components.spec import ComponentSpec
from localdapr.lock.base import LockStore, UnlockStatus, key_strategy
from localdapr.redisconn import RedisConnections

# Returns 1 (deleted), -1 (no such lock) or -2 (held by another owner): contrib's unlock script.
_UNLOCK_SCRIPT = """
local v = redis.call("get", KEYS[1])
if v == false then return -1 end
if v ~= ARGV[1] then return -2 end
return redis.call("del", KEYS[1])
"""


class RedisLockStore(LockStore):
    def __init__(self, connections: RedisConnections) -> None:
        self.connections = connections

    @classmethod
    def from_spec(cls, spec: ComponentSpec) -> RedisLockStore:
        if spec.get_bool("failover"):
            raise spec.fail("this component does not support connecting to Redis with failover")
        store = cls(RedisConnections.from_spec(spec))
        store.key_strategy = key_strategy(spec)
        return store

    async def init(self) -> None:
        await self.connections.connect()
        replicas = (await self.connections.client().info("replication")).get("connected_slaves", 0)
        if replicas:
            await self.connections.close()
            raise ConnectionError(f"lock.redis: replication is not supported ({replicas} replica(s))")

    async def close(self) -> None:
        await self.connections.close()

    async def try_lock(self, key: str, owner: str, expiry_seconds: int) -> bool:
        taken = await self.connections.client().set(key, owner, nx=True, px=expiry_seconds * 1000)
        return bool(taken)

    async def unlock(self, key: str, owner: str) -> UnlockStatus:
        script = self.connections.client().register_script(_UNLOCK_SCRIPT)
        result = int(await script(keys=[key], args=[owner]))
        if result >= 0:
            return UnlockStatus.SUCCESS
        if result == -1:
            return UnlockStatus.LOCK_DOES_NOT_EXIST
        if result == -2:
            return UnlockStatus.LOCK_BELONGS_TO_OTHERS
        return UnlockStatus.INTERNAL_ERROR
