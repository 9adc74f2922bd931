"""Sidecar to sidecar: a service invocation travels to the callee's sidecar, which calls its app.

As daprd's internal CallLocal: the callee's sidecar checks who calls (localdapr/trust.py), applies its
access control (localdapr/acl.py) before the app sees anything, and calls its app over its own app
channel, with its APP_API_TOKEN. The answer comes back as the app gave it; a gRPC app's answer (status,
metadata, InvokeResponse) is carried in a JSON envelope so a gRPC caller gets it unchanged.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from typing import Any

import aiohttp
import grpc
from aiohttp import web
from dapr.proto import common_v1
from multidict import CIMultiDict

from localdapr.acl import AccessControl, parse_spiffe_id
from localdapr.appchannel import AppChannel, AppResponse, MethodCall
from localdapr.appchannel.base import GrpcReply
from localdapr.errors import DaprError
from localdapr.invocation.nameresolution import AppInstance
from localdapr.trust import SidecarTrust

PATH = "/localdapr-internal/invoke/"
_VERB = "localdapr-verb"
_QUERY = "localdapr-query"
_CONTENT_TYPE = "localdapr-content-type"
_TYPE_URL = "localdapr-type-url"
# "denied", "error" (a DaprError), "app-error" or "grpc" (an envelope); absent: the app's answer
_OUTCOME = "localdapr-outcome"
_INTERNAL = {_VERB, _QUERY, _CONTENT_TYPE, _TYPE_URL, _OUTCOME}


class AppUnreachable(Exception):
    """The callee's sidecar could not reach its app (the caller retries as for a connection error)."""


def denied(app_id: str, message: str) -> DaprError:
    """What daprd's caller reports when the callee's access control refuses: 403, PermissionDenied."""
    return DaprError(
        "ERR_DIRECT_INVOKE",
        f"failed to invoke, id: {app_id}, err: rpc error: code = PermissionDenied desc = {message}",
        403,
        grpc.StatusCode.PERMISSION_DENIED,
    )


async def forward(
    session: aiohttp.ClientSession,
    target: AppInstance,
    call: MethodCall,
    trust: SidecarTrust,
    timeout: float,
) -> AppResponse:
    """Caller side: send `call` to `target`'s sidecar; DaprError for a denial, AppUnreachable if its app
    did not answer, aiohttp errors if the sidecar itself did not."""
    headers = CIMultiDict(call.headers)
    headers.update(trust.headers)
    headers[_VERB] = call.verb
    headers[_QUERY] = call.query
    headers[_CONTENT_TYPE] = call.content_type
    if call.type_url:
        headers[_TYPE_URL] = call.type_url
    url = f"{target.sidecar_base_url}{PATH}{call.method}"
    async with session.post(
        url, data=call.data, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
    ) as resp:
        body = await resp.read()
        outcome = resp.headers.get(_OUTCOME, "")
        if outcome == "denied":
            raise denied(target.app_id, body.decode(errors="replace"))
        if outcome == "error":
            err = json.loads(body)
            raise DaprError(err["errorCode"], err["message"], resp.status, grpc.StatusCode[err["grpcStatus"]])
        if outcome == "app-error":
            raise AppUnreachable(body.decode(errors="replace"))
        if outcome == "grpc":
            return _from_envelope(json.loads(body))
        out = CIMultiDict((k, v) for k, v in resp.headers.items() if k.lower() not in _INTERNAL)
        return AppResponse(resp.status, out, body)


class Callee:
    """The callee's side of a service invocation: who calls (proven), its access control, its app.

    Serves the internal route other sidecars forward to, and the calls another sidecar of this
    process hands over in memory (localdapr/inprocess.py).
    """

    def __init__(self, app_id: str, access_control: AccessControl | None, channel: AppChannel | None) -> None:
        self.app_id = app_id
        self.access_control = access_control
        self.channel = channel

    def denial(self, caller: str, method: str, verb: str) -> str | None:
        if self.access_control is None:
            return None
        channel = self.channel
        return self.access_control.denial(
            caller, method, verb, http_app=channel is None or channel.protocol == "http"
        )

    @staticmethod
    def app_headers(headers: Mapping[str, str], caller: str) -> CIMultiDict[str]:
        """The caller's headers as the app gets them: this hop's and localdapr's own dropped, the
        caller's app id as proven, not as the caller says."""
        out = CIMultiDict(
            (k, v)
            for k, v in headers.items()
            if k.lower() not in _INTERNAL and not k.lower().startswith("localdapr-")
        )
        for hop in ("host", "content-length", "transfer-encoding", "connection"):
            out.popall(hop, None)
        parsed = parse_spiffe_id(caller)
        out["dapr-caller-app-id"] = parsed[2] if parsed else caller
        return out

    async def invoke(self, call: MethodCall) -> AppResponse:
        """Call the app (the caller's timeout bounds the call); AppUnreachable when it has no app port
        or did not answer, DaprError as its channel raised it."""
        if self.channel is None:
            raise AppUnreachable(f"app {self.app_id} has no app port")
        try:
            return await self.channel.invoke(call, None)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise AppUnreachable(str(exc) or type(exc).__name__) from exc


def add_routes(
    app: web.Application,
    app_id: str,
    trust: SidecarTrust,
    access_control: AccessControl | None,
    channel: AppChannel | None,
) -> None:
    """Callee side: the route other sidecars forward invocations to."""
    callee = Callee(app_id, access_control, channel)

    async def local(request: web.Request) -> web.Response:
        caller = trust.caller(request.headers)
        if caller is None:
            return web.Response(status=401, text="invalid api token\n")
        verb = request.headers.get(_VERB, "")
        method = request.match_info["method"]
        message = callee.denial(caller, method, verb)
        if message is not None:
            return web.Response(status=403, text=message, headers={_OUTCOME: "denied"})
        call = MethodCall(
            method=method,
            verb=verb,
            query=request.headers.get(_QUERY, ""),
            headers=callee.app_headers(request.headers, caller),
            data=await request.read(),
            content_type=request.headers.get(_CONTENT_TYPE, ""),
            type_url=request.headers.get(_TYPE_URL, ""),
        )
        try:
            result = await callee.invoke(call)
        except DaprError as err:  # raised again on the caller's side, as daprd passes it on
            body = {**err.to_json(), "grpcStatus": err.grpc_status.name}
            return web.json_response(body, status=err.http_status, headers={_OUTCOME: "error"})
        except AppUnreachable as exc:
            return web.Response(status=502, text=str(exc), headers={_OUTCOME: "app-error"})
        if result.grpc is not None:
            return web.json_response(_envelope(result), headers={_OUTCOME: "grpc"})
        headers_out = CIMultiDict(
            (k, v)
            for k, v in result.headers.items()
            if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding")
        )
        return web.Response(status=result.status, body=result.body, headers=headers_out)

    app.router.add_post(f"{PATH}{{method:.*}}", local)


def _pairs_json(pairs: tuple[tuple[str, str | bytes], ...]) -> list[list[Any]]:
    return [
        [k, base64.b64encode(v).decode(), True] if isinstance(v, bytes) else [k, v, False] for k, v in pairs
    ]


def _pairs_back(raw: list[list[Any]]) -> tuple[tuple[str, str | bytes], ...]:
    return tuple((k, base64.b64decode(v) if is_bytes else v) for k, v, is_bytes in raw)


def _envelope(result: AppResponse) -> dict[str, Any]:
    reply = result.grpc
    assert reply is not None
    return {
        "status": result.status,
        "headers": list(result.headers.items()),
        "body": base64.b64encode(result.body).decode(),
        "code": reply.code.name,
        "message": reply.message,
        "response": base64.b64encode(reply.response.SerializeToString()).decode(),
        "grpc_headers": _pairs_json(reply.headers),
        "trailers": _pairs_json(reply.trailers),
    }


def _from_envelope(env: dict[str, Any]) -> AppResponse:
    response = common_v1.InvokeResponse()
    response.ParseFromString(base64.b64decode(env["response"]))
    reply = GrpcReply(
        grpc.StatusCode[env["code"]],
        env["message"],
        response,
        _pairs_back(env["grpc_headers"]),
        _pairs_back(env["trailers"]),
    )
    return AppResponse(
        env["status"], CIMultiDict((k, v) for k, v in env["headers"]), base64.b64decode(env["body"]), reply
    )
