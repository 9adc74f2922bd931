"""One client object per event loop, for components shared by sidecars on different loops.

A component instance is shared by every sidecar in the process that loads it (components/factory.py).
The launcher runs every sidecar on one loop, but tests run sidecars on loops of their own threads, and
an asyncio connection (a psycopg pool, an AMQP connection) belongs to the loop that opened it. So each
loop that uses a component gets its own client, opened on first use (localdapr/redisconn.py does the
same for Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("localdapr.perloop")


class PerLoop(Generic[T]):
    def __init__(self, what: str, open_: Callable[[], Awaitable[T]], close: Callable[[T], Awaitable[None]]):
        self.what = what  # the component type, for error messages
        self._open = open_
        self._close = close
        self._clients: dict[asyncio.AbstractEventLoop, T] = {}
        self._opening: dict[asyncio.AbstractEventLoop, asyncio.Lock] = {}
        self._users: dict[asyncio.AbstractEventLoop, int] = {}
        self.closed = False

    def attach(self) -> None:
        """A sidecar on the running loop starts using the component (components/factory.py acquire)."""
        loop = asyncio.get_running_loop()
        self._users[loop] = self._users.get(loop, 0) + 1

    async def detach(self) -> bool:
        """That sidecar is done: the last user of a loop closes the loop's client there, while the loop
        still runs (a loop stopped with an open client would leave its connections and tasks behind).
        True when the loop has no user left."""
        loop = asyncio.get_running_loop()
        left = self._users.get(loop, 0) - 1
        if left > 0:
            self._users[loop] = left
            return False
        self._users.pop(loop, None)
        client = self._clients.pop(loop, None)
        self._opening.pop(loop, None)
        if client is not None:
            try:
                await self._close(client)
            except Exception as exc:  # the sidecar stops either way
                log.debug("%s: closing a client failed: %s", self.what, exc)
        return True

    async def get(self) -> T:
        if self.closed:
            raise RuntimeError(f"{self.what}: component is closed")
        loop = asyncio.get_running_loop()
        found = self._clients.get(loop)
        if found is not None:
            return found
        # Two calls racing on a fresh loop must not open two clients.
        lock = self._opening.setdefault(loop, asyncio.Lock())
        async with lock:
            found = self._clients.get(loop)
            if found is None:
                found = self._clients[loop] = await self._open()
        return found

    async def close(self) -> None:
        self.closed = True
        clients, self._clients = self._clients, {}
        self._opening.clear()
        current = asyncio.get_running_loop()
        for loop, client in clients.items():
            if loop is current:
                try:
                    await self._close(client)
                except Exception as exc:  # closing must go on for the other loops' clients
                    log.debug("%s: closing a client failed: %s", self.what, exc)
            elif not loop.is_closed() and loop.is_running():
                # A client of another loop must be closed on that loop.
                with contextlib.suppress(RuntimeError):
                    asyncio.run_coroutine_threadsafe(self._close(client), loop)
