"""The actor runtime of a localdapr sidecar (placement, turn-based calls, state, timers, reminders).

See docs/localdapr-actors.md for what is supported and how it differs from daprd.
"""

from localdapr.actors.runtime import ActorSubsystem

__all__ = ["ActorSubsystem"]
