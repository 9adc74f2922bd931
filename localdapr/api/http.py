"""The Dapr HTTP API (`/v1.0/...`) on DAPR_HTTP_PORT, as an aiohttp application."""

from __future__ import annotations

import base64
import hmac
import json
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from localdapr.actors import http as actors_http
from localdapr.api.context import ApiContext
from localdapr.bindings.runtime import OutputBindingError, metadata_headers, request_from_http
from localdapr.configuration import api as configuration_api
from localdapr.errors import DaprError, malformed
from localdapr.invocation import internal
from localdapr.lock import api as lock_api
from localdapr.state.base import StateItem, TransactionOp

API = "/v1.0"
CONTEXT_KEY: web.AppKey[ApiContext] = web.AppKey("context")
HEALTH_PATHS = (f"{API}/healthz", f"{API}/healthz/outbound")


def error_response(err: DaprError) -> web.Response:
    return web.json_response(err.to_json(), status=err.http_status)


def _authenticated(request: web.Request, ctx: ApiContext) -> bool:
    """daprd's APITokenAuthMiddleware: with DAPR_API_TOKEN set, every route but the health checks needs
    it. Another sidecar of the run (a call forwarded to an actor's host) proves itself instead; the
    internal invocation route checks that itself."""
    if not ctx.api_token or request.path in HEALTH_PATHS or request.path.startswith(internal.PATH):
        return True
    if hmac.compare_digest(request.headers.get("dapr-api-token", "").encode(), ctx.api_token.encode()):
        return True
    return request.path.startswith(f"{API}/actors/") and ctx.trust.caller(request.headers) is not None


@web.middleware
async def errors_and_token(request: web.Request, handler: Any) -> web.StreamResponse:
    if not _authenticated(request, request.app[CONTEXT_KEY]):
        # http.Error(w, "invalid api token", 401) in daprd: text/plain, with a newline.
        return web.Response(
            status=401, text="invalid api token\n", headers={"X-Content-Type-Options": "nosniff"}
        )
    try:
        return await handler(request)
    except DaprError as err:
        return error_response(err)


def _json_body(raw: bytes, what: str) -> Any:
    try:
        return json.loads(raw) if raw else None
    except ValueError as exc:
        raise malformed(f"failed deserializing {what}: {exc}") from exc


def _value_bytes(value: Any) -> bytes:
    # The HTTP API takes JSON values; strings are stored as their JSON encoding, like daprd.
    return json.dumps(value, separators=(",", ":")).encode()


def _concurrency(options: Any) -> Any:
    if not isinstance(options, dict):
        return None
    value = options.get("concurrency")
    if value in (None, ""):
        return None
    if value not in ("first-write", "last-write"):
        raise malformed(f"options.concurrency must be first-write or last-write, got {value!r}")
    return value


def build_app(ctx: ApiContext) -> web.Application:
    app = web.Application(middlewares=[errors_and_token], client_max_size=ctx.max_body_bytes)
    app[CONTEXT_KEY] = ctx
    rt = ctx.runtime

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(status=204 if ctx.lifecycle.app_ready else 500)

    async def healthz_outbound(request: web.Request) -> web.Response:
        return web.Response(status=204 if ctx.lifecycle.components_ready else 500)

    async def metadata(request: web.Request) -> web.Response:
        return web.json_response(ctx.lifecycle.metadata_json())

    async def set_metadata(request: web.Request) -> web.Response:
        value = (await request.read()).decode(errors="replace")  # daprd takes any bytes as the value
        rt.extended_metadata[request.match_info["key"]] = value
        return web.Response(status=204)

    async def invoke(request: web.Request) -> web.Response:
        result = await ctx.invoker.invoke(
            request.match_info["app_id"],
            request.match_info["method"],
            request.method,
            await request.read(),
            request.headers,
            request.query_string,
        )
        headers = CIMultiDict(
            (k, v)
            for k, v in result.headers.items()
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding")
        )
        return web.Response(status=result.status, body=result.body, headers=headers)

    # ------------------------------------------------------------------ state
    async def save_state(request: web.Request) -> web.Response:
        body = _json_body(await request.read(), "request body")
        if not isinstance(body, list):
            raise malformed("state save body must be a JSON array of {key, value}")
        items = []
        for i, raw in enumerate(body):
            if not isinstance(raw, dict) or not raw.get("key"):
                raise malformed(f"state item {i} has no key")
            etag = raw.get("etag")
            items.append(
                StateItem(
                    key=str(raw["key"]),
                    value=_value_bytes(raw.get("value")),
                    etag=str(etag) if etag not in (None, "") else None,
                    metadata={str(k): str(v) for k, v in (raw.get("metadata") or {}).items()},
                    concurrency=_concurrency(raw.get("options")),
                )
            )
        await rt.save_state(request.match_info["store"], items)
        return web.Response(status=204)

    async def get_state(request: web.Request) -> web.Response:
        result = await rt.get_state(request.match_info["store"], request.match_info["key"])
        if result is None:
            return web.Response(status=204)
        headers = {"ETag": result.etag}
        for k, v in result.metadata.items():
            headers[f"metadata.{k}"] = v
        return web.Response(status=200, body=result.data, headers=headers, content_type="application/json")

    async def bulk_get(request: web.Request) -> web.Response:
        body = _json_body(await request.read(), "request body") or {}
        keys = [str(k) for k in body.get("keys") or []]
        results = await rt.get_bulk_state(request.match_info["store"], keys)
        out: list[dict[str, Any]] = []
        for key, res in zip(keys, results, strict=True):
            item: dict[str, Any] = {"key": key}
            if res is not None:
                try:
                    item["data"] = json.loads(res.data)
                except ValueError:
                    item["data"] = base64.b64encode(res.data).decode()
                item["etag"] = res.etag
            out.append(item)
        return web.json_response(out)

    async def delete_state(request: web.Request) -> web.Response:
        concurrency = request.query.get("concurrency") or None
        await rt.delete_state(
            request.match_info["store"],
            request.match_info["key"],
            request.headers.get("If-Match") or None,
            _concurrency({"concurrency": concurrency}),
        )
        return web.Response(status=204)

    async def transaction(request: web.Request) -> web.Response:
        body = _json_body(await request.read(), "request body") or {}
        ops = []
        for i, raw in enumerate(body.get("operations") or []):
            req = raw.get("request") or {}
            if not req.get("key"):
                raise malformed(f"operations[{i}].request has no key")
            etag = req.get("etag")
            content_type = req.get("contentType")
            ops.append(
                TransactionOp(
                    operation=raw.get("operation"),
                    item=StateItem(
                        key=str(req["key"]),
                        value=_value_bytes(req.get("value")) if raw.get("operation") == "upsert" else b"",
                        etag=str(etag) if etag not in (None, "") else None,
                        metadata={str(k): str(v) for k, v in (req.get("metadata") or {}).items()},
                        concurrency=_concurrency(req.get("options")),
                        content_type=None if content_type is None else str(content_type),
                    ),
                )
            )
        await rt.transact_state(request.match_info["store"], ops, json_values=True)
        return web.Response(status=204)

    # ------------------------------------------------------------------ pub/sub, secrets
    async def publish(request: web.Request) -> web.Response:
        metadata = {k[len("metadata.") :]: v for k, v in request.query.items() if k.startswith("metadata.")}
        content_type = request.headers.get("Content-Type", "application/json")
        await rt.publish(
            request.match_info["pubsub"],
            request.match_info["topic"],
            await request.read(),
            content_type,
            metadata,
        )
        return web.Response(status=204)

    async def get_secret(request: web.Request) -> web.Response:
        return web.json_response(rt.get_secret(request.match_info["store"], request.match_info["key"]))

    async def bulk_secret(request: web.Request) -> web.Response:
        return web.json_response(rt.get_bulk_secret(request.match_info["store"]))

    # ------------------------------------------------------------------ bindings
    async def invoke_binding(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        try:
            result = await rt.invoke_binding(name, request_from_http(await request.read()))
        except OutputBindingError as err:  # daprd sends the binding's metadata even with its error
            headers = metadata_headers(err.binding_metadata)
            return web.json_response(err.to_json(), status=err.http_status, headers=headers)
        if result is None:
            return web.Response(status=204)
        headers = metadata_headers(result.metadata)
        return web.Response(body=result.data, content_type="application/json", headers=headers)

    verbs = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS")
    app.router.add_get(f"{API}/healthz", healthz)
    app.router.add_get(f"{API}/healthz/outbound", healthz_outbound)
    app.router.add_get(f"{API}/metadata", metadata)
    app.router.add_put(f"{API}/metadata/{{key}}", set_metadata)
    for verb in verbs:
        app.router.add_route(verb, f"{API}/invoke/{{app_id}}/method/{{method:.*}}", invoke)
    app.router.add_post(f"{API}/state/{{store}}", save_state)
    app.router.add_post(f"{API}/state/{{store}}/bulk", bulk_get)
    app.router.add_post(f"{API}/state/{{store}}/transaction", transaction)
    app.router.add_get(f"{API}/state/{{store}}/{{key}}", get_state)
    app.router.add_delete(f"{API}/state/{{store}}/{{key}}", delete_state)
    app.router.add_post(f"{API}/publish/{{pubsub}}/{{topic:.*}}", publish)
    app.router.add_get(f"{API}/secrets/{{store}}/bulk", bulk_secret)
    app.router.add_get(f"{API}/secrets/{{store}}/{{key}}", get_secret)
    for verb in ("POST", "PUT"):
        app.router.add_route(verb, f"{API}/bindings/{{name}}", invoke_binding)
    lock_api.add_http_routes(app, rt.locks)
    configuration_api.add_http_routes(app, rt.configurations, ctx.channel)
    actors_http.add_routes(app, ctx.actors)
    internal.add_routes(app, rt.app_id, ctx.trust, ctx.access_control, ctx.channel)
    return app
