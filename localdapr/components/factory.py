"""Which class implements each component type, and building instances from specs.

Instances are shared per process by component identity (name, type and resolved metadata), so
sidecars hosted in one localdapr process see the same in-memory broker and stores. That is more
permissive than daprd, where in-memory components live inside one sidecar (docs/localdapr.md).
"""

from __future__ import annotations

import importlib
from typing import Any

from localdapr.components.spec import ComponentSpec
from localdapr.errors import ComponentError

# spec.type -> "module:Class"; each class has `from_spec(spec)` that validates its metadata.
STATE_TYPES = {
    "state.in-memory": "localdapr.state.memory:InMemoryStateStore",
    "state.sqlite": "localdapr.state.sqlite:SQLiteStateStore",
    "state.redis": "localdapr.state.redis:RedisStateStore",
    "state.postgresql": "localdapr.state.postgres:PostgresStateStore",
}
PUBSUB_TYPES = {
    "pubsub.in-memory": "localdapr.pubsub.memory:InMemoryBroker",
    "pubsub.redis": "localdapr.pubsub.redis_streams:RedisStreamsBroker",
    "pubsub.rabbitmq": "localdapr.pubsub.rabbitmq:RabbitMQBroker",
    "pubsub.mqtt3": "localdapr.pubsub.mqtt:MQTTBroker",
}
LOCK_TYPES = {
    "lock.in-memory": "localdapr.lock.memory:InMemoryLockStore",
    "lock.redis": "localdapr.lock.redis:RedisLockStore",
}
CONFIGURATION_TYPES = {
    "configuration.redis": "localdapr.configuration.redis:RedisConfigurationStore",
}
SECRET_TYPES = {
    "secretstores.local.file": "localdapr.secrets.local:LocalFileSecretStore",
    "secretstores.local.env": "localdapr.secrets.local:LocalEnvSecretStore",
}
BINDING_TYPES = {
    "bindings.cron": "localdapr.bindings.cron:CronBinding",
    "bindings.localstorage": "localdapr.bindings.localstorage:LocalStorageBinding",
    "bindings.http": "localdapr.bindings.http:HttpBinding",
}
ALL_TYPES = {
    **STATE_TYPES,
    **PUBSUB_TYPES,
    **LOCK_TYPES,
    **CONFIGURATION_TYPES,
    **SECRET_TYPES,
    **BINDING_TYPES,
}
# Every type here has one version; daprd's registries accept it as "", "v0" or "v1", in any case
# (components.IsInitialVersion), so a component file without spec.version loads.
INITIAL_VERSIONS = ("", "v0", "v1")
# Types whose one implementation here is a later version: state.postgresql is v2 only (v1 keeps another
# table layout), and daprd needs `version: v2` to pick it, so nothing else is accepted.
VERSIONS = {"state.postgresql": ("v2",)}


def component_class(spec: ComponentSpec) -> type[Any]:
    target = ALL_TYPES.get(spec.type)
    if target is None:
        supported = ", ".join(sorted(ALL_TYPES))
        raise ComponentError(
            f"{spec.file}: component {spec.name!r}: spec.type {spec.type!r} is not supported by localdapr "
            f"(supported: {supported})"
        )
    versions = VERSIONS.get(spec.type, INITIAL_VERSIONS)
    if spec.version.lower() not in versions:
        raise ComponentError(
            f"{spec.file}: component {spec.name!r}: spec.version {spec.version!r} is not supported for "
            f"{spec.type} (use {versions[-1]})"
        )
    module_name, _, class_name = target.partition(":")
    return getattr(importlib.import_module(module_name), class_name)


_shared: dict[tuple[str, str, tuple[tuple[str, str], ...]], list[Any]] = {}  # identity -> [instance, refs]


async def acquire(spec: ComponentSpec) -> Any:
    """The (possibly shared) instance for spec, initialised on first use; pair with release()."""
    identity = (spec.name, spec.type, tuple(sorted(spec.metadata.items())))
    entry = _shared.get(identity)
    if entry is None:
        instance = component_class(spec).from_spec(spec)
        try:
            await instance.init()
        except ComponentError:
            raise
        except Exception as exc:
            raise ComponentError(
                f"{spec.file}: component {spec.name!r} ({spec.type}) failed to initialise: {exc}"
            ) from exc
        entry = _shared.setdefault(identity, [instance, 0])
    entry[1] += 1
    # Components with a client per event loop count their users per loop (localdapr/perloop.py).
    if hasattr(entry[0], "attach_loop"):
        entry[0].attach_loop()
    return entry[0]


async def release(instance: Any) -> None:
    """Drop one reference; the last one closes the instance so a restart builds a fresh one."""
    for identity, entry in list(_shared.items()):
        if entry[0] is instance:
            if hasattr(instance, "detach_loop"):
                await instance.detach_loop()
            entry[1] -= 1
            if entry[1] <= 0:
                del _shared[identity]
                await instance.close()
            return
