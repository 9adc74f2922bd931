"""What the Dapr APIs serve from: `Sidecar` builds it and hands it to the HTTP and gRPC APIs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from localdapr.acl import AccessControl
from localdapr.actors import ActorSubsystem
from localdapr.appchannel import AppChannel
from localdapr.invocation.invoke import Invoker
from localdapr.pubsub.streaming import StreamingSubscriptions
from localdapr.runtime import DaprRuntime
from localdapr.trust import SidecarTrust


class Lifecycle(Protocol):
    """What the APIs read of the sidecar's state (health, metadata), and the one thing they ask of it."""

    app_ready: bool
    components_ready: bool

    def metadata_json(self) -> dict[str, Any]: ...

    def request_shutdown(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ApiContext:
    runtime: DaprRuntime
    invoker: Invoker
    actors: ActorSubsystem
    streams: StreamingSubscriptions
    channel: AppChannel | None  # None: the sidecar runs without an app port
    lifecycle: Lifecycle
    api_token: str | None  # DAPR_API_TOKEN: required from apps on every API call
    max_body_bytes: int
    trust: SidecarTrust  # other sidecars' calls: forwarded invocations and actor calls
    access_control: AccessControl | None  # the Configuration's accessControl (None: everyone allowed)
