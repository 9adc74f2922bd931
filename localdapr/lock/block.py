"""The lock building block of one sidecar, free of any transport: daprd's checks and errors.

The gRPC and HTTP adapters (api.py) call `try_lock` and `unlock`; each raises DaprError as daprd's
universal API does, in the same order of checks.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from localdapr import errors
from localdapr.components.spec import ComponentSpec
from localdapr.lock.base import LockStore, UnlockStatus, lock_key

log = logging.getLogger("localdapr.lock")


@dataclass(slots=True)
class LoadedLock:
    spec: ComponentSpec
    store: LockStore


@dataclass
class LockBlock:
    app_id: str
    stores: dict[str, LoadedLock] = field(default_factory=dict)

    def add(self, spec: ComponentSpec, store: LockStore) -> None:
        self.stores[spec.name] = LoadedLock(spec, store)

    def take_all(self) -> list[Any]:
        """Forget every store and return the instances, for the runtime to release."""
        instances = [loaded.store for loaded in self.stores.values()]
        self.stores.clear()
        return instances

    def components_metadata(self) -> list[dict[str, Any]]:
        return [
            {"name": s.spec.name, "type": s.spec.type, "version": s.spec.version, "capabilities": []}
            for s in self.stores.values()
        ]

    def _validate(self, store_name: str, resource_id: str, owner: str) -> LoadedLock:
        if not self.stores:
            raise errors.lock_store_not_configured(store_name, self.app_id)
        if not resource_id:
            raise errors.lock_request_invalid("resource", store_name, owner, self.app_id)
        if not owner:
            raise errors.lock_request_invalid("owner", store_name, owner, self.app_id)
        found = self.stores.get(store_name)
        if found is None:
            raise errors.lock_store_not_found(store_name, self.app_id)
        return found

    async def try_lock(self, store_name: str, resource_id: str, owner: str, expiry_seconds: int) -> bool:
        # daprd checks the lease before anything else, then the store and the request.
        if expiry_seconds <= 0:
            raise errors.lock_request_invalid("expiry", store_name, owner, self.app_id)
        loaded = self._validate(store_name, resource_id, owner)
        try:
            key = lock_key(resource_id, store_name, self.app_id, loaded.store.key_strategy)
            return await loaded.store.try_lock(key, owner, expiry_seconds)
        except Exception as exc:
            log.debug("[%s] TryLock on %s failed: %s", self.app_id, store_name, exc)
            raise errors.lock_failed(False, store_name, owner, self.app_id, exc) from exc

    async def unlock(self, store_name: str, resource_id: str, owner: str) -> UnlockStatus:
        loaded = self._validate(store_name, resource_id, owner)
        try:
            key = lock_key(resource_id, store_name, self.app_id, loaded.store.key_strategy)
            return await loaded.store.unlock(key, owner)
        except Exception as exc:
            log.debug("[%s] Unlock on %s failed: %s", self.app_id, store_name, exc)
            raise errors.lock_failed(True, store_name, owner, self.app_id, exc) from exc
