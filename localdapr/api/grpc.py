"""The Dapr gRPC API (`dapr.proto.runtime.v1.Dapr`) on DAPR_GRPC_PORT, on grpc.aio.

RPCs localdapr does not implement answer UNIMPLEMENTED with a message saying so, instead of the
generated stub's bare "Method not implemented!".
"""

from __future__ import annotations

import hmac
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from dapr.proto import api_v1, common_v1
from dapr.proto.runtime.v1 import dapr_pb2_grpc
from google.protobuf import empty_pb2
from grpc_status import rpc_status

from localdapr.api.context import ApiContext
from localdapr.bindings.base import InvokeRequest
from localdapr.bindings.runtime import grpc_call_metadata
from localdapr.configuration import api as configuration_api
from localdapr.errors import DaprError, malformed
from localdapr.invocation import invoke as invoke_api
from localdapr.lock import api as lock_api
from localdapr.pubsub import streaming
from localdapr.state.base import StateItem, TransactionOp

_CONCURRENCY = {
    common_v1.StateOptions.CONCURRENCY_FIRST_WRITE: "first-write",
    common_v1.StateOptions.CONCURRENCY_LAST_WRITE: "last-write",
}


def _item(proto: Any) -> StateItem:
    concurrency = None
    if proto.HasField("options"):
        concurrency = _CONCURRENCY.get(proto.options.concurrency)
    return StateItem(
        key=proto.key,
        value=bytes(proto.value),
        etag=proto.etag.value if proto.HasField("etag") and proto.etag.value else None,
        metadata=dict(proto.metadata),
        concurrency=concurrency,  # type: ignore[arg-type]
    )


class DaprGrpcApi(dapr_pb2_grpc.DaprServicer):
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx
        self.rt = ctx.runtime

    # ------------------------------------------------------------------ state
    async def SaveState(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        await self.rt.save_state(request.store_name, [_item(s) for s in request.states])
        return empty_pb2.Empty()

    async def GetState(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        result = await self.rt.get_state(request.store_name, request.key)
        if result is None:
            return api_v1.GetStateResponse()
        return api_v1.GetStateResponse(data=result.data, etag=result.etag, metadata=result.metadata)

    async def GetBulkState(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        keys = list(request.keys)
        results = await self.rt.get_bulk_state(request.store_name, keys)
        items = []
        for key, res in zip(keys, results, strict=True):
            if res is None:
                items.append(api_v1.BulkStateItem(key=key))
            else:
                items.append(
                    api_v1.BulkStateItem(key=key, data=res.data, etag=res.etag, metadata=res.metadata)
                )
        return api_v1.GetBulkStateResponse(items=items)

    async def DeleteState(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        etag = request.etag.value if request.HasField("etag") and request.etag.value else None
        concurrency = _CONCURRENCY.get(request.options.concurrency) if request.HasField("options") else None
        await self.rt.delete_state(request.store_name, request.key, etag, concurrency)  # type: ignore[arg-type]
        return empty_pb2.Empty()

    async def DeleteBulkState(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        for state in request.states:
            item = _item(state)
            await self.rt.delete_state(request.store_name, item.key, item.etag, item.concurrency)
        return empty_pb2.Empty()

    async def ExecuteStateTransaction(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        ops = []
        for op in request.operations:
            if op.operationType not in ("upsert", "delete"):
                raise malformed(f"operation type {op.operationType!r} not supported (upsert or delete)")
            ops.append(TransactionOp(operation=op.operationType, item=_item(op.request)))
        await self.rt.transact_state(request.storeName, ops)
        return empty_pb2.Empty()

    # ------------------------------------------------------------------ pub/sub
    async def PublishEvent(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        await self.rt.publish(
            request.pubsub_name,
            request.topic,
            bytes(request.data),
            request.data_content_type,
            dict(request.metadata),
        )
        return empty_pb2.Empty()

    async def BulkPublishEvent(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        self.rt.pubsub(request.pubsub_name)  # unknown pubsub fails the whole call, as in daprd
        failed = []
        for entry in request.entries:
            metadata = {**dict(request.metadata), **dict(entry.metadata)}
            try:
                await self.rt.publish(
                    request.pubsub_name, request.topic, bytes(entry.event), entry.content_type, metadata
                )
            except DaprError as err:
                failed.append(
                    api_v1.BulkPublishResponseFailedEntry(entry_id=entry.entry_id, error=err.message)
                )
        return api_v1.BulkPublishResponse(failedEntries=failed)

    BulkPublishEventAlpha1 = BulkPublishEvent
    SubscribeTopicEventsAlpha1 = streaming.subscribe_topic_events

    # ------------------------------------------------------------------ invocation
    InvokeService = invoke_api.invoke_service

    # ------------------------------------------------------------------ bindings
    async def InvokeBinding(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        # daprd adds the caller's gRPC metadata (trace context) to the binding's request metadata.
        metadata = {**request.metadata, **grpc_call_metadata(context.invocation_metadata() or ())}
        invocation = InvokeRequest(request.operation, bytes(request.data), metadata)
        result = await self.rt.invoke_binding(request.name, invocation)
        if result is None:
            return api_v1.InvokeBindingResponse()
        return api_v1.InvokeBindingResponse(data=result.data, metadata=result.metadata)

    # ------------------------------------------------------------------ secrets
    async def GetSecret(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return api_v1.GetSecretResponse(data=self.rt.get_secret(request.store_name, request.key))

    async def GetBulkSecret(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        bulk = self.rt.get_bulk_secret(request.store_name)
        return api_v1.GetBulkSecretResponse(
            data={k: api_v1.SecretResponse(secrets=v) for k, v in bulk.items()}
        )

    # ------------------------------------------------------------------ distributed lock
    TryLockAlpha1 = lock_api.try_lock
    UnlockAlpha1 = lock_api.unlock

    # ------------------------------------------------------------------ configuration
    GetConfiguration = GetConfigurationAlpha1 = configuration_api.get_configuration
    SubscribeConfiguration = SubscribeConfigurationAlpha1 = configuration_api.subscribe_configuration
    UnsubscribeConfiguration = UnsubscribeConfigurationAlpha1 = configuration_api.unsubscribe_configuration

    # ------------------------------------------------------------------ metadata
    async def GetMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        meta = self.ctx.lifecycle.metadata_json()
        return api_v1.GetMetadataResponse(
            id=meta["id"],
            runtime_version=meta["runtimeVersion"],
            extended_metadata=meta["extended"],
            registered_components=[
                api_v1.RegisteredComponents(
                    name=c["name"], type=c["type"], version=c["version"], capabilities=c["capabilities"]
                )
                for c in meta["components"]
            ],
            active_actors_count=[
                api_v1.ActiveActorsCount(type=a["type"], count=a["count"]) for a in meta["actors"]
            ],
            subscriptions=[
                api_v1.PubsubSubscription(
                    pubsub_name=s["pubsubname"],
                    topic=s["topic"],
                    metadata=s.get("metadata") or {},
                    rules=api_v1.PubsubSubscriptionRules(
                        rules=[
                            api_v1.PubsubSubscriptionRule(match=r.get("match", ""), path=r["path"])
                            for r in s["rules"]
                        ]
                    ),
                    dead_letter_topic=s.get("deadLetterTopic") or "",
                    type=api_v1.PubsubSubscriptionType.Value(s["type"]),
                )
                for s in meta["subscriptions"]
            ],
            enabled_features=meta["enabledFeatures"],
        )

    async def SetMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        if request.key:  # daprd ignores a label without a key
            self.rt.extended_metadata[request.key] = request.value
        return empty_pb2.Empty()

    async def Shutdown(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        self.ctx.lifecycle.request_shutdown()
        return empty_pb2.Empty()


def _wrap(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def call(self: DaprGrpcApi, request: Any, context: grpc.aio.ServicerContext) -> Any:
        token = self.ctx.api_token
        if token:  # daprd's setAPIAuthenticationMiddlewareUnary
            given = dict(context.invocation_metadata()).get("dapr-api-token")
            if given is None:
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing api token in request metadata")
            if not hmac.compare_digest(str(given).encode(), token.encode()):
                await context.abort(
                    grpc.StatusCode.UNAUTHENTICATED, "authentication error: api token mismatch"
                )
        try:
            return await method(self, request, context)
        except DaprError as err:
            # With the google.rpc.Status details daprd sends (ErrorInfo, ResourceInfo, BadRequest).
            await context.abort_with_status(rpc_status.to_status(err.to_status()))

    call.__name__ = method.__name__
    return call


def _unsupported(name: str) -> Callable[..., Any]:
    async def call(self: DaprGrpcApi, request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED,
            f"localdapr does not support the Dapr gRPC method {name} (see docs/localdapr.md)",
        )

    return call


_IMPLEMENTED = {name for name, value in vars(DaprGrpcApi).items() if callable(value) and name[:1].isupper()}
for _name in _IMPLEMENTED:
    setattr(DaprGrpcApi, _name, _wrap(getattr(DaprGrpcApi, _name)))
for _name in dir(dapr_pb2_grpc.DaprServicer):
    if _name[:1].isupper() and _name not in _IMPLEMENTED:
        setattr(DaprGrpcApi, _name, _unsupported(_name))


def register(server: grpc.aio.Server, ctx: ApiContext) -> DaprGrpcApi:
    """Add the Dapr service."""
    api = DaprGrpcApi(ctx)
    dapr_pb2_grpc.add_DaprServicer_to_server(api, server)
    return api


def new_entry_id() -> str:
    return str(uuid.uuid4())
