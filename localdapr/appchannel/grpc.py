"""The gRPC app channel: the app serves `dapr.proto.runtime.v1.AppCallback`, as daprd's gRPC channel.

A service invocation becomes `OnInvoke(InvokeRequest)`: the method, the data as an Any (a gRPC
caller's type_url kept), the content type and the HTTP extension (verb and query string, absent when a
gRPC caller sent none); headers become gRPC metadata, the permanent HTTP headers (Content-Type,
Accept, ...) prefixed with `dapr-` (daprd's InternalMetadataToGrpcMetadata). The answer is translated
for HTTP callers as daprd's HTTP API does: status 200 with the InvokeResponse data as body and its
content type (`application/x-protobuf` when the data carries a type_url), or, when the app failed,
the HTTP status of the gRPC code (HTTPStatusFromCode) with `{"code", "message", "details"}` as body;
the app's response metadata become headers. gRPC callers get the app's own status and message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import grpc
from dapr.proto import appcallback_service_v1, common_v1
from google.protobuf import any_pb2, empty_pb2, json_format
from google.rpc import status_pb2
from multidict import CIMultiDict

from localdapr.appchannel.base import AppResponse, GrpcReply, MethodCall, wait_for_port

_VERBS = common_v1.HTTPExtension.Verb
PROTOBUF_CONTENT_TYPE = "application/x-protobuf"
STATUS_DETAILS_KEY = "grpc-status-details-bin"

# daprd's HTTPStatusFromCode (grpc-gateway's table); any other code is 500.
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 408,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
}

# Request headers daprd renames `dapr-<name>` on their way to a gRPC app (isPermanentHTTPHeader).
_PERMANENT_HEADERS = frozenset(
    {
        "accept",
        "accept-charset",
        "accept-language",
        "accept-ranges",
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "cache-control",
        "content-type",
        "content-length",
        "cookie",
        "date",
        "expect",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-schedule-tag-match",
        "if-unmodified-since",
        "max-forwards",
        "origin",
        "pragma",
        "referer",
        "via",
        "warning",
    }
)
_METADATA_KEY = re.compile(r"^[0-9a-z_.-]+$")


def http_status(code: grpc.StatusCode) -> int:
    return _HTTP_STATUS.get(code, 500)


def go_code_name(code: grpc.StatusCode) -> str:
    """The code as Go's codes.Code prints it (daprd's error texts say `code = Unavailable`)."""
    if code is grpc.StatusCode.CANCELLED:
        return "Canceled"
    return "".join(part.capitalize() for part in code.name.split("_"))


def rpc_error_text(exc: grpc.aio.AioRpcError) -> str:
    """An app's gRPC error in the words of grpc-go's error string, which daprd's messages quote."""
    return f"rpc error: code = {go_code_name(exc.code())} desc = {exc.details() or ''}"


def grpc_metadata(headers: Mapping[str, str]) -> list[tuple[str, str | bytes]]:
    """Request headers (or a gRPC caller's metadata) as the gRPC metadata daprd sends to the app."""
    out: list[tuple[str, str | bytes]] = []
    for key, value in headers.items():
        name = key.lower()
        if name == "destination-app-id":
            continue
        if name in _PERMANENT_HEADERS:
            name = "dapr-" + name
        # gRPC reserves these names and refuses keys outside [0-9a-z_.-]: not sendable, so not sent.
        if name.startswith(("grpc-", ":")) or name == "te" or not _METADATA_KEY.match(name):
            continue
        if name.endswith("-bin"):
            try:
                out.append((name, base64.b64decode(value, validate=True)))
            except (binascii.Error, ValueError):
                continue
        elif value.isascii() and value.isprintable():
            out.append((name, value))
    return out


def http_headers(metadata: Iterable[tuple[str, str | bytes]]) -> CIMultiDict[str]:
    """An app's response metadata as HTTP headers (daprd's InternalMetadataToHTTPHeader)."""
    out: CIMultiDict[str] = CIMultiDict()
    for key, value in metadata:
        name = key.lower()
        if name.endswith("-bin") or name == "content-type" or not isinstance(value, str):
            continue
        if name.startswith(":"):
            name = "dapr-" + name[1:]
        elif name.startswith("grpc-"):
            name = "dapr-" + name
        out[name] = value
    return out


def status_body(code: grpc.StatusCode, message: str, trailers: Iterable[tuple[str, str | bytes]]) -> bytes:
    """daprd's HTTP body for a failed gRPC app: the status as protojson (`details` when there are any).

    Raises ValueError when a detail's type is unknown, as daprd fails to marshal it.
    """
    status = status_pb2.Status(code=code.value[0], message=message)
    for key, value in trailers:
        if key == STATUS_DETAILS_KEY and isinstance(value, bytes):
            status.details.extend(status_pb2.Status.FromString(value).details)
    try:
        return json.dumps(json_format.MessageToDict(status), separators=(",", ":")).encode()
    except (TypeError, KeyError) as exc:
        raise ValueError(str(exc)) from exc


def _pairs(metadata: Any) -> tuple[tuple[str, str | bytes], ...]:
    return tuple((str(k), v) for k, v in (metadata or ()))


class GrpcAppChannel:
    protocol: ClassVar[str] = "grpc"
    hosts_actors: ClassVar[bool] = False

    def __init__(
        self,
        app_id: str,
        host: str,
        port: int,
        api_token: str | None = None,
        max_message_bytes: int = 4 << 20,
    ) -> None:
        self.app_id = app_id
        self.host = host
        self.port = port
        self.api_token = api_token
        self.max_message_bytes = max_message_bytes
        self.ready = False
        self._channel: grpc.aio.Channel | None = None

    def _connection(self) -> grpc.aio.Channel:
        # Created on first use, so it belongs to the event loop that uses it.
        if self._channel is None:
            self._channel = grpc.aio.insecure_channel(
                f"{self.host}:{self.port}",
                options=[
                    ("grpc.max_send_message_length", self.max_message_bytes),
                    ("grpc.max_receive_message_length", self.max_message_bytes),
                    # A restarted app is reached again within a second, not after gRPC's default backoff
                    # (up to two minutes); the app is local, so no proxy applies either.
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.min_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 1000),
                    ("grpc.enable_http_proxy", 0),
                ],
            )
        return self._channel

    @property
    def callback(self) -> appcallback_service_v1.AppCallbackStub:
        return appcallback_service_v1.AppCallbackStub(self._connection())

    def metadata(self, pairs: Iterable[tuple[str, str | bytes]] = ()) -> tuple[tuple[str, str | bytes], ...]:
        """Call metadata, with APP_API_TOKEN as `dapr-api-token` when set (daprd's AddAppTokenToContext)."""
        out = tuple(pairs)
        if self.api_token:
            out += (("dapr-api-token", self.api_token),)
        return out

    async def wait_ready(self, timeout: float, stop: asyncio.Event | None = None) -> bool:
        self.ready = await wait_for_port(self.host, self.port, timeout, stop)
        return self.ready

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: dict[str, str] | CIMultiDict[str] | None = None,
        query: str = "",
        timeout: float | None = 60.0,
    ) -> AppResponse:
        call_headers = CIMultiDict(headers or {})
        content_type = call_headers.pop("content-type", "")
        call = MethodCall(path.lstrip("/"), method, query, call_headers, body, content_type)
        return await self.invoke(call, timeout)

    async def invoke(self, call: MethodCall, timeout: float | None) -> AppResponse:
        request = common_v1.InvokeRequest(
            method=call.method,
            data=any_pb2.Any(type_url=call.type_url, value=call.data),
            content_type=call.content_type,
        )
        if call.verb:
            request.http_extension.verb = _VERBS.Value(call.verb.upper())
            request.http_extension.querystring = call.query
        rpc = self.callback.OnInvoke(
            request, metadata=self.metadata(grpc_metadata(call.headers)), timeout=timeout
        )
        try:
            response = await rpc
        except grpc.aio.AioRpcError as exc:
            return self._failure(exc)
        headers = _pairs(await rpc.initial_metadata())
        reply = GrpcReply(grpc.StatusCode.OK, "", response, headers, _pairs(await rpc.trailing_metadata()))
        out = http_headers(headers)
        content_type = PROTOBUF_CONTENT_TYPE if response.data.type_url else response.content_type
        if content_type:
            out["content-type"] = content_type
        return AppResponse(200, out, bytes(response.data.value), reply)

    def _failure(self, exc: grpc.aio.AioRpcError) -> AppResponse:
        code, message = exc.code(), exc.details() or ""
        trailers = _pairs(exc.trailing_metadata())
        reply = GrpcReply(code, message, common_v1.InvokeResponse(), _pairs(exc.initial_metadata()), trailers)
        headers = http_headers(reply.headers)
        # daprd writes the body without a content type and Go's net/http labels it text/plain.
        headers["content-type"] = "text/plain; charset=utf-8"
        try:
            body = status_body(code, message, trailers)
        except ValueError as err:
            body = json.dumps({"errorCode": "ERR_MALFORMED_RESPONSE", "message": str(err)}).encode()
            return AppResponse(500, CIMultiDict({"content-type": "application/json"}), body, reply)
        return AppResponse(http_status(code), headers, body, reply)

    async def probe(self, timeout: float) -> bool:
        """AppCallbackHealthCheck.HealthCheck: any error (UNIMPLEMENTED included) is a failed probe."""
        stub = appcallback_service_v1.AppCallbackHealthCheckStub(self._connection())
        try:
            await stub.HealthCheck(empty_pb2.Empty(), metadata=self.metadata(), timeout=timeout)
        except grpc.aio.AioRpcError:
            return False
        return True

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
