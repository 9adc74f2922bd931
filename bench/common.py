"""Shared benchmark helpers: timing loops, percentiles and the printed table."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def stat_cpu_seconds(path: Path) -> float:
    """User + system CPU seconds of a `/proc/<pid>/stat` or `/proc/<pid>/task/<tid>/stat` file; 0 once
    the process is gone."""
    try:
        fields = path.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_cpu_seconds(pid: int) -> float:
    return stat_cpu_seconds(Path(f"/proc/{pid}/stat"))


@dataclass
class Result:
    name: str
    backend: str
    ops: int
    seconds: float
    latencies: list[float]
    # CPU seconds per operation by process ("client", "sidecar", "app"), where the benchmark reads them.
    cpu_per_op: dict[str, float] = field(default_factory=dict)

    @property
    def ops_per_second(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        data = sorted(self.latencies)
        if not data:
            return float("nan")
        return data[min(len(data) - 1, int(q * len(data)))] * 1000

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")


def measure(
    name: str,
    backend: str,
    op: Callable[[int], None],
    n: int,
    concurrency: int = 1,
    warmup: int = 50,
    cpu: Callable[[], dict[str, float]] | None = None,
) -> Result:
    """Run op(i) n times over `concurrency` threads; per-call latency and overall throughput. `cpu`: CPU
    seconds so far by process, read after the warm-up and at the end (the result's `cpu_per_op`)."""
    for i in range(warmup):
        op(-1 - i)
    cpu_before = cpu() if cpu else {}
    latencies: list[float] = []

    def one(i: int) -> None:
        t0 = time.perf_counter()
        op(i)
        latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    if concurrency == 1:
        for i in range(n):
            one(i)
    else:
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, range(n)))
    seconds = time.perf_counter() - start
    cpu_after = cpu() if cpu else {}
    per_op = {k: (cpu_after[k] - cpu_before[k]) / n for k in cpu_after}
    return Result(name, backend, n, seconds, latencies, per_op)


def table(rows: list[Result], baselines: dict[str, str] | None = None) -> str:
    """Markdown table; `baselines` maps a row name to the name of its direct equivalent (for ratios)."""
    by_key = {(r.name, r.backend): r for r in rows}
    lines = [
        "| operation | backend | ops/s | p50 ms | p99 ms | p50 vs direct |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = ""
        base_name = (baselines or {}).get(r.name)
        if base_name:
            base = by_key.get((base_name, r.backend)) or next((x for x in rows if x.name == base_name), None)
            if base is not None and base.p50 > 0:
                ratio = f"{r.p50 / base.p50:.1f}x"
        lines.append(
            f"| {r.name} | {r.backend} | {r.ops_per_second:,.0f} | {r.p50:.2f} | {r.pct(0.99):.2f} | "
            f"{ratio} |"
        )
    return "\n".join(lines)


async def asgi_post(app: Any, path: str, body: bytes, port: int = 8000) -> tuple[int, bytes]:
    """POST `body` (JSON) to an ASGI `app` in this process, no server and no socket: (status, answer)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", port),
    }
    sent, status, answer = False, 0, bytearray()

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            answer.extend(message.get("body", b""))

    await app(scope, receive, send)
    return status, bytes(answer)
