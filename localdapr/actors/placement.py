"""Placement: which live app instance hosts an actor id, by consistent hashing.

daprd asks the Placement service for a table per actor type (a consistent-hash ring with virtual
nodes over the hosts that registered the type). localdapr has no placement service: every sidecar
builds the same ring from the name-resolution folder (instances announce their actor types once
their app is ready), so all sidecars agree on the owner without talking to each other. When an
instance stops it leaves the folder, the ring loses its points, and only its actor ids move.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence

from localdapr.invocation.nameresolution import AppInstance, NameRegistry

# Points per host on the ring. More points = a more even spread; 200 keeps two hosts within a
# few percent of half each (the two-replica test demands neither gets under a quarter).
VIRTUAL_NODES = 200


def _hash(text: str) -> int:
    # A stable hash: Python's hash() differs per process, and every sidecar process must agree.
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class HashRing:
    """A consistent-hash ring over host keys (instance ids)."""

    def __init__(self, hosts: Sequence[str], virtual_nodes: int = VIRTUAL_NODES) -> None:
        self.hosts = tuple(sorted(set(hosts)))
        points = sorted((_hash(f"{host}#{i}"), host) for host in self.hosts for i in range(virtual_nodes))
        self._keys = [p[0] for p in points]
        self._owners = [p[1] for p in points]

    def lookup(self, key: str) -> str | None:
        if not self._keys:
            return None
        index = bisect.bisect(self._keys, _hash(key)) % len(self._keys)
        return self._owners[index]


class Placement:
    """Actor type -> ring of the live instances hosting it, rebuilt when the membership changes."""

    def __init__(self, registry: NameRegistry) -> None:
        self.registry = registry
        self._rings: dict[str, tuple[tuple[str, ...], HashRing]] = {}

    def hosts(self, actor_type: str) -> list[AppInstance]:
        return [i for i in self.registry.instances() if actor_type in i.actor_types and i.app_port]

    def members(self, actor_type: str) -> tuple[str, ...]:
        return tuple(sorted(i.instance_id for i in self.hosts(actor_type)))

    def ring(self, actor_type: str, hosts: list[AppInstance]) -> HashRing:
        members = tuple(sorted(i.instance_id for i in hosts))
        cached = self._rings.get(actor_type)
        if cached is None or cached[0] != members:
            cached = (members, HashRing(members))
            self._rings[actor_type] = cached
        return cached[1]

    def lookup(self, actor_type: str, actor_id: str) -> AppInstance | None:
        """The instance hosting `actor_type`/`actor_id`, or None when no live instance hosts the type."""
        hosts = self.hosts(actor_type)
        if not hosts:
            return None
        owner = self.ring(actor_type, hosts).lookup(actor_id)
        return next((i for i in hosts if i.instance_id == owner), None)
