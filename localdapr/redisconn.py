"""Redis clients for localdapr's Redis components, one per event loop.

A component instance is shared by every sidecar in the process that loads it (see
components/factory.py). Sidecars usually share one event loop (the launcher), but tests run
sidecars on loops of their own threads, and an asyncio Redis connection belongs to the loop that
opened it. So each loop that uses a component gets its own client, created on first use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import RedisError

from localdapr.components.spec import ComponentSpec

log = logging.getLogger("localdapr.redis")


def parse_redis_host(text: str) -> tuple[str, int]:
    """`host:port`, `host` or `[v6addr]:port` as daprd's redisHost; ValueError naming the text."""
    value = text.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    else:
        host, port_text = value, ""
    if not host:
        raise ValueError(f"redisHost {text!r}: expected host:port, e.g. localhost:6379")
    if not port_text:
        return host, 6379
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"redisHost {text!r}: port {port_text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"redisHost {text!r}: port {port} is out of range")
    return host, port


class RedisConnections:
    def __init__(
        self,
        host: str,
        port: int,
        db: int = 0,
        username: str | None = None,
        password: str | None = None,
        tls: bool = False,
        what: str = "redis",
    ) -> None:
        self.host, self.port, self.db = host, port, db
        self.username, self.password, self.tls = username, password, tls
        self.what = what  # the component type, for error messages
        self._clients: dict[asyncio.AbstractEventLoop, aioredis.Redis] = {}
        self.closed = False

    @classmethod
    def from_spec(cls, spec: ComponentSpec) -> RedisConnections:
        """The connection metadata every Redis component shares, as components-contrib reads it."""
        try:
            host, port = parse_redis_host(spec.require("redisHost"))
        except ValueError as exc:
            raise spec.fail(str(exc)) from None
        return cls(
            host,
            port,
            db=spec.get_int("redisDB", 0, 0),
            username=spec.get("redisUsername") or None,
            password=spec.get("redisPassword") or None,
            tls=spec.get_bool("enableTLS"),
            what=spec.type,
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _new(self) -> aioredis.Redis:
        return aioredis.Redis(
            host=self.host,
            port=self.port,
            db=self.db,
            username=self.username,
            password=self.password,
            ssl=self.tls,
            protocol=2,  # fixed reply shapes, and works with servers older than Redis 6 (no HELLO)
            # redis-py's default retries a dead connection 10 times with up to 10 s waits; callers
            # have their own backoff, and init() should say "unreachable" within a second.
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), 3),
        )

    def client(self) -> aioredis.Redis:
        if self.closed:
            raise RuntimeError(f"{self.what}: component is closed")
        loop = asyncio.get_running_loop()
        found = self._clients.get(loop)
        if found is None or loop.is_closed():
            found = self._clients[loop] = self._new()
        return found

    async def connect(self) -> None:
        """Ping once; a ConnectionError naming the address (redisHost) when Redis is unreachable."""
        self.closed = False
        try:
            await self.client().ping()
        except (RedisError, OSError) as exc:
            await self.close()
            raise ConnectionError(
                f"{self.what}: cannot connect to Redis at {self.address} (redisHost): {exc}"
            ) from exc

    async def close(self) -> None:
        self.closed = True
        clients, self._clients = self._clients, {}
        current = asyncio.get_running_loop()
        for loop, client in clients.items():
            if loop is current:
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()
                    await client.connection_pool.disconnect()
            elif not loop.is_closed() and loop.is_running():
                # A client of another loop must be closed on that loop.
                asyncio.run_coroutine_threadsafe(client.aclose(), loop)
