"""The sidecar's channel to an app, over the app protocol (`--app-protocol`, `appProtocol` in dapr.yaml).

One interface, AppChannel (base.py), with an HTTP implementation (http.py: plain HTTP on the app port)
and a gRPC one (grpc.py: the app serves AppCallback). Service invocation, the sidecar's own calls and
health probes go through the channel; pub/sub and input bindings use per-protocol sinks built on it.
"""

from __future__ import annotations

from localdapr.appchannel.base import AppChannel, AppResponse, MethodCall
from localdapr.appchannel.grpc import GrpcAppChannel
from localdapr.appchannel.http import HttpAppChannel

APP_PROTOCOLS = ("http", "grpc")

__all__ = [
    "APP_PROTOCOLS",
    "AppChannel",
    "AppResponse",
    "GrpcAppChannel",
    "HttpAppChannel",
    "MethodCall",
    "open_channel",
]


def open_channel(
    protocol: str,
    app_id: str,
    host: str,
    port: int,
    api_token: str | None = None,
    health_check_path: str = "/healthz",
) -> AppChannel:
    """The channel for an app speaking `protocol` ("http" or "grpc") on host:port."""
    if protocol == "grpc":
        return GrpcAppChannel(app_id, host, port, api_token)
    if protocol == "http":
        return HttpAppChannel(app_id, host, port, api_token, health_check_path)
    raise ValueError(f"app protocol {protocol!r} is not supported (use one of: {', '.join(APP_PROTOCOLS)})")
