"""lock.in-memory: locks in the localdapr process, with owners and lease expiry.

components-contrib's lock.in-memory grants every TryLock and answers every Unlock SUCCESS (it keeps no
locks); this one keeps them, with the same owner and expiry rules as lock.redis (docs/localdapr.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from localdapr.components.spec import ComponentSpec
from localdapr.lock.base import LockStore, UnlockStatus, key_strategy


class InMemoryLockStore(LockStore):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._held: dict[str, tuple[str, float]] = {}  # key -> (owner, expires at)
        # A thread lock, not an asyncio one: sidecars hosted on different event loops (threads) share
        # one instance, and no operation awaits while holding it.
        self._mutex = threading.Lock()

    @classmethod
    def from_spec(cls, spec: ComponentSpec) -> InMemoryLockStore:
        store = cls()
        store.key_strategy = key_strategy(spec)
        return store

    def _drop_expired(self, now: float) -> None:
        for key in [k for k, (_, expires) in self._held.items() if expires <= now]:
            del self._held[key]

    async def try_lock(self, key: str, owner: str, expiry_seconds: int) -> bool:
        with self._mutex:
            now = self._clock()
            self._drop_expired(now)
            if key in self._held:
                return False
            self._held[key] = (owner, now + expiry_seconds)
            return True

    async def unlock(self, key: str, owner: str) -> UnlockStatus:
        with self._mutex:
            self._drop_expired(self._clock())
            held = self._held.get(key)
            if held is None:
                return UnlockStatus.LOCK_DOES_NOT_EXIST
            if held[0] != owner:
                return UnlockStatus.LOCK_BELONGS_TO_OTHERS
            del self._held[key]
            return UnlockStatus.SUCCESS
