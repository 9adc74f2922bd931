"""The configuration building block of one sidecar, free of any transport: daprd's checks and errors.

The gRPC and HTTP adapters (api.py) call these. A subscription belongs to the sidecar that made it:
unsubscribing, or the sidecar stopping, ends it at the store and tells its transport (`on_end`), which
ends a gRPC SubscribeConfiguration stream as daprd does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from localdapr import errors
from localdapr.components.spec import ComponentSpec
from localdapr.configuration.base import ConfigurationStore, Items, UnknownSubscription, UpdateHandler

log = logging.getLogger("localdapr.configuration")


@dataclass(slots=True)
class LoadedConfiguration:
    spec: ComponentSpec
    store: ConfigurationStore


@dataclass(slots=True)
class ActiveSubscription:
    store_name: str
    store: ConfigurationStore
    on_end: Callable[[], None]


@dataclass
class ConfigurationBlock:
    app_id: str
    stores: dict[str, LoadedConfiguration] = field(default_factory=dict)
    subscriptions: dict[str, ActiveSubscription] = field(default_factory=dict)

    def add(self, spec: ComponentSpec, store: ConfigurationStore) -> None:
        self.stores[spec.name] = LoadedConfiguration(spec, store)

    def take_all(self) -> list[Any]:
        """Forget every store and return the instances, for the runtime to release (after stop())."""
        instances = [loaded.store for loaded in self.stores.values()]
        self.stores.clear()
        return instances

    def components_metadata(self) -> list[dict[str, Any]]:
        return [
            {"name": c.spec.name, "type": c.spec.type, "version": c.spec.version, "capabilities": []}
            for c in self.stores.values()
        ]

    def store(self, name: str) -> ConfigurationStore:
        if not self.stores:
            raise errors.configuration_store_not_configured()
        found = self.stores.get(name)
        if found is None:
            raise errors.configuration_store_not_found(name)
        return found.store

    async def get(self, store_name: str, keys: Sequence[str], metadata: Mapping[str, str]) -> Items:
        store = self.store(store_name)
        try:
            return await store.get(keys, metadata)
        except Exception as exc:
            raise errors.configuration_failed(False, store_name, keys, exc) from exc

    async def subscribe(
        self,
        store_name: str,
        keys: Sequence[str],
        metadata: Mapping[str, str],
        handler: UpdateHandler,
        on_end: Callable[[], None],
    ) -> str:
        store = self.store(store_name)
        try:
            subscription_id = await store.subscribe(keys, metadata, handler)
        except Exception as exc:
            raise errors.configuration_failed(True, store_name, keys, exc) from exc
        self.subscriptions[subscription_id] = ActiveSubscription(store_name, store, on_end)
        return subscription_id

    async def unsubscribe(self, store_name: str, subscription_id: str) -> None:
        """End a subscription of this sidecar on `store_name`; UnknownSubscription when there is none."""
        self.store(store_name)
        active = self.subscriptions.get(subscription_id)
        if active is None or active.store_name != store_name:
            raise UnknownSubscription(f"subscription with id {subscription_id} does not exist")
        del self.subscriptions[subscription_id]
        try:
            await active.store.unsubscribe(subscription_id)
        finally:
            active.on_end()

    async def discard(self, subscription_id: str) -> None:
        """End a subscription whose receiver went away (a closed gRPC stream); no-op once it has ended."""
        active = self.subscriptions.get(subscription_id)
        if active is not None:
            await self.unsubscribe(active.store_name, subscription_id)

    async def stop(self) -> None:
        """End every subscription of this sidecar (it is stopping)."""
        for subscription_id in list(self.subscriptions):
            try:
                await self.discard(subscription_id)
            except Exception:  # stopping must go on for the other subscriptions
                log.exception(
                    "[%s] ending configuration subscription %s failed", self.app_id, subscription_id
                )
