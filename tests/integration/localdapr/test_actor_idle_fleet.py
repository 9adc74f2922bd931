"""Many actors going idle together: all are deactivated, and each comes back with its state.

Issue 13 (10,000 machines): a fleet that goes quiet together goes idle together. The sidecar must
deactivate every one of them (DELETE to the app) in a scan or a few, and each actor's next call must
activate it again from the persisted state, none lost or mixed up.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from localdapr.testing import wait_until
from tests.integration.localdapr.test_actors import FAST, TYPE, Cluster, Node, actor_store

pytestmark = pytest.mark.sidecar

ACTORS = 300


async def add_all(node: Node, amounts: dict[str, int]) -> dict[str, int]:
    """Call Add(amount) on each actor, 32 calls in flight; what each answered."""
    gate = asyncio.Semaphore(32)
    async with httpx.AsyncClient(timeout=60) as client:

        async def one(actor_id: str, amount: int) -> tuple[str, int]:
            async with gate:
                resp = await client.post(f"{node.api}/actors/{TYPE}/{actor_id}/method/Add", json=amount)
                resp.raise_for_status()
                return actor_id, int(resp.json())

        return dict(await asyncio.gather(*(one(a, n) for a, n in amounts.items())))


def active(node: Node) -> int:
    meta = httpx.get(f"{node.api}/metadata", timeout=10).json()
    return sum(a["count"] for a in meta["actors"] if a["type"] == TYPE)


def test_hundreds_of_idle_actors_deactivate_and_reactivate_with_state(tmp_path: Path) -> None:
    actor_store(tmp_path / "res", "sqlite")
    cluster = Cluster(tmp_path)
    try:
        host = cluster.start("idle-fleet-host", FAST)  # idle after 1 s, scanned every 0.1 s
        ids = [f"m-{i:04d}" for i in range(ACTORS)]
        first = asyncio.run(add_all(host, {a: i + 1 for i, a in enumerate(ids)}))
        assert first == {a: i + 1 for i, a in enumerate(ids)}

        def all_deactivated() -> bool:
            gone = host.stats()["deactivations"]
            return all(gone.get(a, 0) >= 1 for a in ids) and active(host) == 0

        wait_until(all_deactivated, 60, interval=0.2, what=f"all {ACTORS} actors idle-deactivated")

        again = asyncio.run(add_all(host, dict.fromkeys(ids, 1000)))
        assert again == {a: i + 1 + 1000 for i, a in enumerate(ids)}  # each read its own state back
        stats = host.stats()
        assert {a: stats["activations"].get(a) for a in ids} == dict.fromkeys(ids, 2)
        assert not any(stats["overlaps"].get(a) for a in ids)
    finally:
        cluster.stop()
