"""The configuration API on both transports, as daprd serves it.

gRPC: `GetConfiguration`, `SubscribeConfiguration` (a stream: first a message with the subscription
id, then one per change, ending when the subscription is unsubscribed) and `UnsubscribeConfiguration`,
each also as its `Alpha1` twin (the SDK subscribes through `SubscribeConfigurationAlpha1`).

HTTP, under `/v1.0` and `/v1.0-alpha1`: `GET configuration/{store}?key=a&key=b` (the items as JSON,
204 when there are none), `GET configuration/{store}/subscribe?key=...` (`{"id": ...}`; changes are
POSTed to the app at `/configuration/{store}/{key}`, one request per changed key, each with the whole
`{"id", "items"}` event) and `GET configuration/{store}/{id}/unsubscribe` (`{"ok": true}`).
`metadata.<name>` query parameters are the request metadata.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import aiohttp
import grpc
from aiohttp import web
from dapr.proto import api_v1, common_v1

from localdapr.configuration.base import Items, UnknownSubscription

if TYPE_CHECKING:
    from localdapr.appchannel import AppChannel
    from localdapr.configuration.block import ConfigurationBlock

log = logging.getLogger("localdapr.configuration")


def _items(items: Items) -> dict[str, Any]:
    return {
        key: common_v1.ConfigurationItem(value=i.value, version=i.version, metadata=i.metadata)
        for key, i in items.items()
    }


def _not_subscribed(subscription_id: str, reason: str) -> str:
    return f"failed to unsubscribe to configuration request {subscription_id}: {reason}"


# ---------------------------------------------------------------------------------------- gRPC
async def get_configuration(api: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
    items = await api.rt.configurations.get(request.store_name, list(request.keys), dict(request.metadata))
    return api_v1.GetConfigurationResponse(items=_items(items))


async def subscribe_configuration(api: Any, request: Any, context: grpc.aio.ServicerContext) -> None:
    block = api.rt.configurations
    updates: asyncio.Queue[Items | None] = asyncio.Queue()
    subscription_id = await block.subscribe(
        request.store_name,
        list(request.keys),
        dict(request.metadata),
        updates.put,
        lambda: updates.put_nowait(None),
    )
    try:
        await context.write(api_v1.SubscribeConfigurationResponse(id=subscription_id))
        while (items := await updates.get()) is not None:
            await context.write(
                api_v1.SubscribeConfigurationResponse(id=subscription_id, items=_items(items))
            )
    finally:
        await block.discard(subscription_id)  # the client went away: stop watching


async def unsubscribe_configuration(api: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
    try:
        await api.rt.configurations.unsubscribe(request.store_name, request.id)
    except UnknownSubscription:
        message = _not_subscribed(request.id, "subscription does not exist")
        return api_v1.UnsubscribeConfigurationResponse(ok=False, message=message)
    return api_v1.UnsubscribeConfigurationResponse(ok=True)


# ---------------------------------------------------------------------------------------- HTTP
class _ToApp:
    """Delivers a subscription's changes to the app as daprd's HTTP channel does."""

    def __init__(self, channel: AppChannel, store_name: str) -> None:
        self.channel = channel
        self.store_name = store_name
        self.subscription_id = ""
        # A change can arrive before subscribe() has returned the id that goes into the event.
        self._known = asyncio.Event()

    def start(self, subscription_id: str) -> None:
        self.subscription_id = subscription_id
        self._known.set()

    async def __call__(self, items: Items) -> None:
        await self._known.wait()
        body = json.dumps({"id": self.subscription_id, "items": {k: i.to_json() for k, i in items.items()}})
        for key in items:
            path = f"/configuration/{self.store_name}/{key}"
            try:
                resp = await self.channel.request(
                    "POST", path, body=body.encode(), headers={"content-type": "application/json"}
                )
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.error("error sending configuration item to the app: %s", exc)
                continue
            if resp.status != 200:
                log.error(
                    "error sending configuration item to the app: error sending configuration item to "
                    "application, status %d",
                    resp.status,
                )


def _metadata(query: Mapping[str, str]) -> dict[str, str]:
    return {k[len("metadata.") :]: v for k, v in query.items() if k.startswith("metadata.")}


def add_http_routes(app: web.Application, block: ConfigurationBlock, channel: AppChannel | None) -> None:

    async def http_get(request: web.Request) -> web.Response:
        keys = request.query.getall("key", [])
        items = await block.get(request.match_info["store"], keys, _metadata(request.query))
        if not items:
            return web.Response(status=204)
        return web.json_response({k: i.to_json() for k, i in items.items()})

    async def http_subscribe(request: web.Request) -> web.Response:
        store_name = request.match_info["store"]
        block.store(store_name)  # an unknown store is reported before a missing app channel, as daprd
        if channel is None:
            return web.json_response(
                {
                    "errorCode": "ERR_APP_CHANNEL_NIL",
                    "message": "app channel is not initialized. cannot subscribe to configuration updates",
                },
                status=500,
            )
        deliver = _ToApp(channel, store_name)
        keys = request.query.getall("key", [])
        subscription_id = await block.subscribe(
            store_name, keys, _metadata(request.query), deliver, lambda: None
        )
        deliver.start(subscription_id)
        return web.json_response({"id": subscription_id})

    async def http_unsubscribe(request: web.Request) -> web.Response:
        subscription_id = request.match_info["id"]
        try:
            await block.unsubscribe(request.match_info["store"], subscription_id)
        except UnknownSubscription as exc:
            # daprd's JSON leaves out `ok` when it is false (omitempty).
            return web.json_response({"message": _not_subscribed(subscription_id, exc.args[0])}, status=500)
        return web.json_response({"ok": True})

    for version in ("/v1.0", "/v1.0-alpha1"):
        app.router.add_get(f"{version}/configuration/{{store}}", http_get)
        app.router.add_get(f"{version}/configuration/{{store}}/subscribe", http_subscribe)
        app.router.add_get(f"{version}/configuration/{{store}}/{{id}}/unsubscribe", http_unsubscribe)
