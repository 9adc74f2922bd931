"""The building blocks of one sidecar, free of any transport: the HTTP and gRPC APIs both call these.

Each method raises DaprError with daprd's code and statuses, so both adapters report errors alike.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from localdapr import errors
from localdapr.bindings.base import InvokeRequest, InvokeResponse
from localdapr.bindings.runtime import LoadedBinding, invoke_output
from localdapr.components import factory
from localdapr.components.metadata import resolve_metadata
from localdapr.components.spec import ComponentSpec, Configuration, Resources
from localdapr.configuration.block import ConfigurationBlock
from localdapr.errors import ComponentError, DaprError
from localdapr.lock.block import LockBlock
from localdapr.outbox import Outbox
from localdapr.pubsub.base import PubSubBroker
from localdapr.pubsub.cloudevents import build_envelope, is_raw
from localdapr.resiliency import Resiliency
from localdapr.scoping import SecretScopes, TopicScopes, publish_forbidden
from localdapr.secrets.local import SecretNotFound, SecretStore
from localdapr.state import base as state_base
from localdapr.state.base import GetResult, StateItem, StateStore, TransactionOp
from localdapr.state.keys import key_prefix, logical_key, physical_key
from localdapr.telemetry import Telemetry, current

log = logging.getLogger("localdapr")


@dataclass(slots=True)
class LoadedStore:
    spec: ComponentSpec
    store: StateStore
    prefix: str

    @property
    def is_actor_store(self) -> bool:
        return self.spec.get_bool("actorStateStore")


@dataclass(slots=True)
class LoadedPubSub:
    spec: ComponentSpec
    broker: PubSubBroker
    # This app's topics on it (allowedTopics, publishingScopes, ...): unrestricted unless the spec says.
    scopes: TopicScopes = field(default_factory=lambda: TopicScopes((), (), (), ()))


@dataclass
class DaprRuntime:
    app_id: str
    resources: Resources
    configuration: Configuration = field(default_factory=Configuration)
    states: dict[str, LoadedStore] = field(default_factory=dict)
    pubsubs: dict[str, LoadedPubSub] = field(default_factory=dict)
    secrets: dict[str, tuple[ComponentSpec, SecretStore]] = field(default_factory=dict)
    bindings: dict[str, LoadedBinding] = field(default_factory=dict)
    extended_metadata: dict[str, str] = field(default_factory=dict)
    resiliency: Resiliency = field(default_factory=Resiliency)
    telemetry: Telemetry = field(default_factory=lambda: Telemetry(""))  # the sidecar sets its own
    locks: LockBlock = field(init=False)
    secret_scopes: SecretScopes = field(init=False)  # the Configuration's secrets.scopes
    configurations: ConfigurationBlock = field(init=False)
    outbox: Outbox = field(init=False)

    def __post_init__(self) -> None:
        self.secret_scopes = SecretScopes.from_configuration(self.configuration.raw, self.configuration.name)
        self.locks = LockBlock(self.app_id)
        self.configurations = ConfigurationBlock(self.app_id)
        self.outbox = Outbox(self.app_id, self.states, self.pubsubs)

    # ---------------------------------------------------------------- components
    async def load_components(self) -> None:
        """Build every component scoped to this app; secret stores first, for secretKeyRef."""
        mine = [c for c in self.resources.components if c.applies_to(self.app_id)]
        ordered = sorted(mine, key=lambda c: c.building_block != "secretstores")
        try:
            for spec in ordered:
                resolve_metadata(spec, self.app_id, {n: store for n, (_, store) in self.secrets.items()})
                instance = await factory.acquire(spec)
                block = spec.building_block
                if block == "state":
                    prefix = key_prefix(spec.get("keyPrefix", "appid"), self.app_id, spec.name)
                    self.states[spec.name] = LoadedStore(spec, instance, prefix)
                    self.outbox.add(spec)
                elif block == "pubsub":
                    scopes = TopicScopes.of(spec.metadata, self.app_id)
                    self.pubsubs[spec.name] = LoadedPubSub(spec, instance, scopes)
                elif block == "secretstores":
                    self.secrets[spec.name] = (spec, instance)
                elif block == "lock":
                    self.locks.add(spec, instance)
                elif block == "configuration":
                    self.configurations.add(spec, instance)
                elif block == "bindings":
                    self.bindings[spec.name] = LoadedBinding.of(spec, instance)
            actor_stores = [s for s in self.states.values() if s.is_actor_store]
            if len(actor_stores) > 1:
                files = ", ".join(str(s.spec.file) for s in actor_stores)
                raise ComponentError(
                    f'more than one state store has actorStateStore: "true" ({files}); exactly one may'
                )
            await self.outbox.start()  # once every pubsub is loaded: the internal topics live on them
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        await self.configurations.stop()  # subscriptions end before their stores are released
        await self.outbox.stop()
        instances: list[Any] = [s.store for s in self.states.values()]
        instances += [p.broker for p in self.pubsubs.values()]
        instances += [s for _, s in self.secrets.values()]
        instances += self.locks.take_all()
        instances += self.configurations.take_all()
        instances += [b.instance for b in self.bindings.values()]
        self.states.clear()
        self.pubsubs.clear()
        self.secrets.clear()
        self.bindings.clear()
        for instance in instances:
            try:
                await factory.release(instance)
            except Exception:  # closing must not stop the other components from closing
                log.exception("closing a component failed")

    # ---------------------------------------------------------------- state
    def store(self, name: str) -> LoadedStore:
        if not self.states:
            raise errors.state_store_not_configured(name, self.app_id)
        found = self.states.get(name)
        if found is None:
            raise errors.state_store_not_found(name, self.app_id)
        return found

    @property
    def actor_store(self) -> LoadedStore | None:
        return next((s for s in self.states.values() if s.is_actor_store), None)

    async def save_state(self, store_name: str, items: Sequence[StateItem]) -> None:
        loaded = self.store(store_name)
        for item in items:
            item.key = physical_key(loaded.prefix, item.key, store_name)
            await _state_call(loaded, "save", loaded.store.set(item))

    async def get_state(self, store_name: str, key: str) -> GetResult | None:
        loaded = self.store(store_name)
        return await _state_call(
            loaded, "get", loaded.store.get(physical_key(loaded.prefix, key, store_name))
        )

    async def get_bulk_state(self, store_name: str, keys: Sequence[str]) -> list[GetResult | None]:
        loaded = self.store(store_name)
        physical = [physical_key(loaded.prefix, k, store_name) for k in keys]
        return await _state_call(loaded, "get", loaded.store.bulk_get(physical))

    async def delete_state(
        self, store_name: str, key: str, etag: str | None, concurrency: state_base.Concurrency | None
    ) -> None:
        loaded = self.store(store_name)
        await _state_call(
            loaded,
            "delete",
            loaded.store.delete(physical_key(loaded.prefix, key, store_name), etag, concurrency),
        )

    async def transact_state(
        self, store_name: str, ops: Sequence[TransactionOp], *, json_values: bool = False
    ) -> None:
        """Apply `ops` atomically; on a store with an outbox, publish its upserts once committed.

        `json_values`: each upsert value is the JSON encoding of a value decoded from an HTTP body.
        daprd keeps such values decoded, which decides how its outbox renders them.
        """
        loaded = self.store(store_name)
        for op in ops:
            if op.operation not in ("upsert", "delete"):
                raise errors.malformed(f"operation type {op.operation!r} not supported (upsert or delete)")
            op.item.key = physical_key(loaded.prefix, op.item.key, store_name)

        async def commit(final: Sequence[TransactionOp]) -> None:
            await _state_call(loaded, "transaction", loaded.store.transact(final))

        if self.outbox.enabled(store_name):
            await self.outbox.transact(store_name, ops, json_values, commit)
        else:
            await commit(ops)

    def logical_key(self, store_name: str, physical: str) -> str:
        return logical_key(self.store(store_name).prefix, physical)

    # ---------------------------------------------------------------- pub/sub
    def pubsub(self, name: str) -> LoadedPubSub:
        if not self.pubsubs:
            raise errors.pubsub_not_configured(name, self.app_id)
        found = self.pubsubs.get(name)
        if found is None:
            raise errors.pubsub_not_found(name, self.app_id)
        return found

    async def publish(
        self, pubsub_name: str, topic: str, data: bytes, content_type: str, metadata: dict[str, str]
    ) -> None:
        loaded = self.pubsub(pubsub_name)
        if not topic:
            raise DaprError(
                "ERR_TOPIC_NAME_EMPTY",
                f"topic is empty in pubsub {pubsub_name}",
                404,
                grpc.StatusCode.INVALID_ARGUMENT,
            )
        if not loaded.scopes.may_publish(topic):
            raise publish_forbidden(topic, self.app_id)
        if is_raw(metadata):
            payload = data
        else:
            try:
                envelope = build_envelope(
                    data=data,
                    content_type=content_type,
                    topic=topic,
                    pubsub_name=pubsub_name,
                    source_app_id=self.app_id,
                    metadata=metadata,
                )
            except ValueError as exc:
                raise DaprError(
                    "ERR_PUBSUB_CLOUD_EVENTS_SER",
                    f"error when marshalling cloud event envelope for topic "
                    f"{topic} pubsub {pubsub_name}: {exc}",
                    500,
                    grpc.StatusCode.INVALID_ARGUMENT,
                ) from exc
            payload = json.dumps(envelope).encode()
        started = time.perf_counter()
        try:
            await loaded.broker.publish(topic, payload, dict(metadata))
        except Exception as exc:
            self.telemetry.published(pubsub_name, topic, False, started)
            raise DaprError(
                "ERR_PUBSUB_PUBLISH_MESSAGE",
                f"error when publish to topic {topic} in pubsub {pubsub_name}: {exc}",
                500,
                grpc.StatusCode.INTERNAL,
            ) from exc
        self.telemetry.published(pubsub_name, topic, True, started)

    # ---------------------------------------------------------------- bindings
    async def invoke_binding(self, name: str, request: InvokeRequest) -> InvokeResponse | None:
        """Invoke output binding `name`; OutputBindingError (ERR_INVOKE_OUTPUT_BINDING) on failure."""
        return await invoke_output(self.bindings, name, request, self.resiliency.for_binding_outbound(name))

    # ---------------------------------------------------------------- secrets
    def secret_store(self, name: str) -> SecretStore:
        if not self.secrets:
            raise DaprError(
                "ERR_SECRET_STORES_NOT_CONFIGURED",
                "secret store is not configured",
                500,
                grpc.StatusCode.FAILED_PRECONDITION,
            )
        found = self.secrets.get(name)
        if found is None:
            raise errors.secret_store_not_found(name)
        return found[1]

    def get_secret(self, store_name: str, key: str) -> dict[str, str]:
        store = self.secret_store(store_name)
        self.secret_scopes.check(store_name, key)  # after the store lookup, as daprd
        try:
            return store.get(key)
        except SecretNotFound as exc:
            raise DaprError(
                "ERR_SECRET_GET",
                f"failed getting secret with key {key} from secret store {store_name}: {exc}",
                500,
                grpc.StatusCode.INTERNAL,
            ) from exc

    def get_bulk_secret(self, store_name: str) -> dict[str, dict[str, str]]:
        found = self.secret_store(store_name).bulk()
        return {k: v for k, v in found.items() if self.secret_scopes.allows(store_name, k)}

    # ---------------------------------------------------------------- metadata
    def components_metadata(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for s in self.states.values():
            caps = list(s.store.capabilities) + ([state_base.CAP_ACTOR] if s.is_actor_store else [])
            out.append(
                {"name": s.spec.name, "type": s.spec.type, "version": s.spec.version, "capabilities": caps}
            )
        for p in self.pubsubs.values():
            out.append(
                {
                    "name": p.spec.name,
                    "type": p.spec.type,
                    "version": p.spec.version,
                    "capabilities": list(p.broker.capabilities),
                }
            )
        for spec, _ in self.secrets.values():
            out.append({"name": spec.name, "type": spec.type, "version": spec.version, "capabilities": []})
        out += self.locks.components_metadata()
        out += self.configurations.components_metadata()
        for b in self.bindings.values():
            out.append(
                {
                    "name": b.spec.name,
                    "type": b.spec.type,
                    "version": b.spec.version,
                    "capabilities": b.capabilities,
                }
            )
        return out


async def _state_call(loaded: LoadedStore, verb: str, call: Any) -> Any:
    name = loaded.spec.name
    started, ok = time.perf_counter(), False
    try:
        result = await call
        ok = True
        return result
    except state_base.EtagMismatch as exc:
        raise DaprError(
            "ERR_STATE_SAVE" if verb != "delete" else "ERR_STATE_DELETE",
            f"failed {_verbing(verb)} state in state store {name}: {exc}",
            409,
            grpc.StatusCode.ABORTED,
        ) from exc
    except state_base.EtagInvalid as exc:
        raise DaprError(
            "ERR_STATE_SAVE" if verb != "delete" else "ERR_STATE_DELETE",
            f"failed {_verbing(verb)} state in state store {name}: {exc}",
            400,
            grpc.StatusCode.INVALID_ARGUMENT,
        ) from exc
    except DaprError:
        raise
    except Exception as exc:
        code = {"get": "ERR_STATE_GET", "delete": "ERR_STATE_DELETE", "transaction": "ERR_STATE_TRANSACTION"}
        raise DaprError(
            code.get(verb, "ERR_STATE_SAVE"),
            f"failed {_verbing(verb)} state in state store {name}: {exc}",
            500,
            grpc.StatusCode.INTERNAL,
        ) from exc
    finally:
        # daprd's operation names: get, set, delete, transaction
        current().state_op(name, "set" if verb == "save" else verb, ok, started)


def _verbing(verb: str) -> str:
    return {"save": "saving", "get": "getting", "delete": "deleting", "transaction": "executing"}.get(
        verb, verb
    )
