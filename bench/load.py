"""Load driver for bench_pipeline, run as its own process so its CPU is not counted as the sidecars'
(bench_pipeline hosts the sidecars as threads and reads its own CPU) and so it does not compete with
them for this process's GIL.

    python -m bench.load '{"phase": "closed", "url": "http://127.0.0.1:8001", "out": "r.json", ...}'

Writes one JSON object to spec["out"]: readings sent and accepted, seconds, per-reading latencies (ms).

Machines are `simulated_fleet` machines (real FD001 trajectories with noise). A machine's k-th
reading has seq k and the values of trajectory row (k - 1) mod its length, so a run is never short
of cycles; seqs only grow, so a phase continues where the previous one stopped (`first_seq`).
- warm: every machine gets seqs [first_seq, first_seq + cycles) in requests of `group` machines with
  all their cycles, `concurrency` requests in flight (disjoint machines: no reordering);
- closed: requests of `group` machines x `per` consecutive readings each, round robin over the
  fleet, `concurrency` in flight, until `readings` are sent (sustained throughput);
  warm and closed stop early after `max_seconds` (a platform too slow to finish says so in `sent`);
- open: one reading per request at `rate` readings/s for `seconds`, whatever the answers do; latency
  counts from the planned send time, so a platform that falls behind shows it (no coordinated
  omission), at most `max_in_flight` requests outstanding (more are counted as `dropped`).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np

from apps.common import cmapss
from vigil.fleet import VALUE_COLUMNS, simulated_fleet


class Load:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.url = spec["url"].rstrip("/") + "/v1/readings"
        fleet = simulated_fleet(
            cmapss.load_train(),
            spec["machines"],
            seed=spec.get("seed", 7),
            max_shift=0,
            prefix=spec["prefix"],
        )
        self.ids = [m.equipment_id for m in fleet.machines]
        self.rows = [np.asarray(m.trajectory[:, 2:], dtype=np.float64).tolist() for m in fleet.machines]
        self.sent = self.accepted = self.duplicates = self.rejected = self.dropped = 0
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def reading(self, machine: int, seq: int, stamp: str) -> dict[str, Any]:
        rows = self.rows[machine]
        return {
            "equipment_id": self.ids[machine],
            "profile": "turbofan",
            "timestamp": stamp,
            "seq": seq,
            "values": dict(zip(VALUE_COLUMNS, rows[(seq - 1) % len(rows)], strict=True)),
        }

    def requests(self, group: int, per: int, first_seq: int) -> Iterator[list[tuple[int, int]]]:
        """(machine, seq) lists, one per request, forever: groups of machines in turn, `per` seqs each."""
        seq = first_seq
        while True:
            for start in range(0, len(self.ids), group):
                machines = range(start, min(start + group, len(self.ids)))
                yield [(m, s) for m in machines for s in range(seq, seq + per)]
            seq += per

    async def post(self, http: aiohttp.ClientSession, items: list[tuple[int, int]], planned: float) -> None:
        stamp = datetime.now(UTC).isoformat()
        body = json.dumps({"readings": [self.reading(m, s, stamp) for m, s in items]})
        self.sent += len(items)
        try:
            async with http.post(self.url, data=body, headers={"content-type": "application/json"}) as r:
                answer = await r.json(content_type=None)
        except Exception as exc:  # reported, not fatal: the table says how many did not get through
            self.rejected += len(items)
            self.errors.append(repr(exc)[:200])
            return
        done = (time.perf_counter() - planned) * 1000
        accepted = int(answer.get("accepted", 0)) if isinstance(answer, dict) else 0
        self.accepted += accepted
        self.duplicates += int(answer.get("duplicates", 0)) if isinstance(answer, dict) else 0
        self.rejected += len(items) - accepted
        if r.status >= 400 and len(self.errors) < 5:
            self.errors.append(f"{r.status}: {str(answer)[:200]}")
        self.latencies.extend([done] * accepted)

    async def closed(self, http: aiohttp.ClientSession, group: int, per: int, total: int) -> None:
        plan = self.requests(group, per, self.spec["first_seq"])
        planned = 0
        stop_at = time.perf_counter() + self.spec.get("max_seconds", 1e9)

        async def worker() -> None:
            nonlocal planned
            # no await between the check and taking the request: no race
            while planned < total and time.perf_counter() < stop_at:
                items = next(plan)
                planned += len(items)
                await self.post(http, items, time.perf_counter())

        await asyncio.gather(*(worker() for _ in range(self.spec.get("concurrency", 1))))

    async def open(self, http: aiohttp.ClientSession, rate: float, seconds: float) -> None:
        plan = self.requests(1, 1, self.spec["first_seq"])
        limit = self.spec.get("max_in_flight", 2000)
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            planned = start + i / rate
            delay = planned - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            items = next(plan)
            if len(tasks) >= limit:
                self.dropped += 1
                continue
            task = asyncio.create_task(self.post(http, items, planned))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)

    async def run(self) -> dict[str, Any]:
        spec = self.spec
        connector = aiohttp.TCPConnector(limit=spec.get("connections", 256))
        timeout = aiohttp.ClientTimeout(total=spec.get("timeout", 300))
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
            t0 = time.perf_counter()
            if spec["phase"] == "warm":
                await self.closed(http, spec["group"], spec["cycles"], len(self.ids) * spec["cycles"])
            elif spec["phase"] == "closed":
                await self.closed(http, spec["group"], spec["per"], spec["readings"])
            else:
                await self.open(http, spec["rate"], spec["seconds"])
            seconds = time.perf_counter() - t0
        return {
            "sent": self.sent,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "dropped": self.dropped,
            "seconds": seconds,
            "latencies_ms": self.latencies,
            "errors": self.errors[:5],
        }


def main() -> None:
    spec = json.loads(sys.argv[1])
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = json.dumps(asyncio.run(Load(spec).run()))
    # A file, not stdout: a pipe left non-blocking by the event loop cut long answers short.
    Path(spec["out"]).write_text(result)


if __name__ == "__main__":
    main()
