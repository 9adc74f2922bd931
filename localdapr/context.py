"""What the parts of one sidecar share: `Sidecar` builds it once and hands it to each part.

The parts (the actor runtime, the APIs) take this instead of the `Sidecar`, so they depend only on
what lies below them, and `sidecar.py` stays the one place where parts are built and wired.
"""

from __future__ import annotations

from dataclasses import dataclass

from localdapr.appchannel import AppChannel
from localdapr.components.spec import Configuration
from localdapr.invocation.nameresolution import AppInstance, NameRegistry
from localdapr.resiliency import Resiliency
from localdapr.runtime import DaprRuntime
from localdapr.trust import SidecarTrust


@dataclass(frozen=True, slots=True)
class SidecarContext:
    app_id: str
    # This sidecar's entry in the registry: its instance id, and the actor types it announces.
    instance: AppInstance
    registry: NameRegistry
    resiliency: Resiliency
    # The components; which state store holds actor state is known once they are loaded.
    runtime: DaprRuntime
    configuration: Configuration
    channel: AppChannel | None  # None: the sidecar runs without an app port
    trust: SidecarTrust  # proves this sidecar to the others (calls forwarded to an actor's host)
