"""localdapr's own overhead: state, publish-to-delivery and invocation through the sidecar with the
official SDK, for in-memory, SQLite and Redis, beside the same operation done directly.

    python -m bench.bench_sidecar [--ops 2000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
import tempfile
import time
from pathlib import Path

import httpx

from bench.common import Result, measure, table
from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port, wait_until
from tests.integration.localdapr.components import component, state_component

REPO = Path(__file__).resolve().parents[1]
REDIS = ("127.0.0.1", 6379)
REDIS_HOST = f"{REDIS[0]}:{REDIS[1]}"


def redis_up() -> bool:
    try:
        socket.create_connection(REDIS, timeout=0.5).close()
        return True
    except OSError:
        return False


def resources(folder: Path, backend: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    broker = (
        ("pubsub.redis", {"redisHost": REDIS_HOST, "processingTimeout": "10s"})
        if backend == "redis"
        else ("pubsub.in-memory", {})
    )
    (folder / "state.yaml").write_text(state_component(backend, folder, redis=REDIS_HOST))
    (folder / "pubsub.yaml").write_text(component("pubsub", *broker))
    return folder


def run_backend(backend: str, ops: int, concurrency: int, tmp: Path) -> list[Result]:
    from dapr.clients import DaprClient

    res = resources(tmp / backend, backend)
    app_port = free_port()
    app_id = f"bench-{backend}-{os.getpid()}"
    sidecar = SidecarThread(
        SidecarOptions(app_id=app_id, resources_paths=[res], app_port=app_port, registry_dir=tmp / "reg")
    ).start()
    app = AppProcess(
        "bench.apps.bench_app:app", app_port, sidecar.options.app_env(), cwd=REPO, name=app_id
    ).start()
    sidecar.wait_app_ready()
    os.environ["DAPR_HTTP_PORT"] = str(sidecar.http_port)
    os.environ["DAPR_GRPC_PORT"] = str(sidecar.grpc_port)
    rows: list[Result] = []
    payload = json.dumps({"machine": "unit-1", "rul": 87.5, "sensors": list(range(20))})
    try:
        with DaprClient() as client:
            rows.append(
                measure(
                    "state save",
                    backend,
                    lambda i: client.save_state("statestore", f"k{i % 500}", payload),
                    ops,
                    concurrency,
                )
            )
            rows.append(
                measure(
                    "state get",
                    backend,
                    lambda i: client.get_state("statestore", f"k{i % 500}"),
                    ops,
                    concurrency,
                )
            )
            rows.append(
                measure(
                    "invoke round trip",
                    backend,
                    lambda i: client.invoke_method(app_id, "echo", data=payload, http_verb="POST"),
                    ops,
                    concurrency,
                )
            )
            base = f"http://127.0.0.1:{app_port}"
            with httpx.Client() as http:
                http.delete(f"{base}/latencies")
                start = time.perf_counter()
                for i in range(ops):
                    client.publish_event(
                        "pubsub",
                        "bench",
                        json.dumps({"sent": time.time(), "i": i}),
                        data_content_type="application/json",
                    )
                lat = wait_until(
                    lambda: (v := http.get(f"{base}/latencies").json()) and len(v) >= ops and v,
                    timeout=120,
                    interval=0.2,
                    what="all bench events delivered",
                )
                rows.append(Result("publish to delivery", backend, ops, time.perf_counter() - start, lat))
    finally:
        app.stop()
        sidecar.stop()
    return rows


def direct_rows(ops: int, concurrency: int, tmp: Path) -> list[Result]:
    rows: list[Result] = []
    app_port = free_port()
    app = AppProcess("bench.apps.bench_app:app", app_port, {}, cwd=REPO, name="bench-direct").start()
    payload = json.dumps({"machine": "unit-1", "rul": 87.5, "sensors": list(range(20))})
    try:
        with httpx.Client() as http:
            url = f"http://127.0.0.1:{app_port}"
            rows.append(
                measure(
                    "raw HTTP to app",
                    "direct",
                    lambda i: http.post(f"{url}/echo", content=payload),
                    ops,
                    concurrency,
                )
            )
            http.delete(f"{url}/latencies")
            start = time.perf_counter()
            for _ in range(ops):
                http.post(f"{url}/direct", json={"data": {"sent": time.time()}})
            lat = http.get(f"{url}/latencies").json()
            rows.append(Result("raw HTTP POST event", "direct", ops, time.perf_counter() - start, lat))
    finally:
        app.stop()
    db = sqlite3.connect(tmp / "raw.db", check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS s (k TEXT PRIMARY KEY, v BLOB)")

    def sqlite_set(i: int) -> None:
        db.execute("INSERT OR REPLACE INTO s VALUES (?, ?)", (f"k{i % 500}", payload))
        db.commit()

    rows.append(measure("raw sqlite upsert", "sqlite", sqlite_set, ops, 1))
    if redis_up():
        import redis

        r = redis.Redis(*REDIS)
        rows.append(
            measure("raw redis SET", "redis", lambda i: r.set(f"bench:k{i % 500}", payload), ops, concurrency)
        )
        rows.append(measure("raw redis GET", "redis", lambda i: r.get(f"bench:k{i % 500}"), ops, concurrency))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    backends = ["in-memory", "sqlite"] + (["redis"] if redis_up() else [])
    rows: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            print(f"... {backend}", flush=True)
            rows += run_backend(backend, args.ops, args.concurrency, Path(tmp))
        rows += direct_rows(args.ops, args.concurrency, Path(tmp))
    print(
        f"\nlocaldapr sidecar benchmark: {args.ops} ops per row, {args.concurrency} client threads "
        f"(publish: sequential publishes, latency = publish to app handler)\n"
    )
    print(
        table(
            rows,
            {
                "state save": "raw redis SET",
                "state get": "raw redis GET",
                "invoke round trip": "raw HTTP to app",
                "publish to delivery": "raw HTTP POST event",
            },
        )
    )
    if "redis" not in backends:
        print("\n(Redis unreachable at 127.0.0.1:6379: Redis rows skipped)")


if __name__ == "__main__":
    main()
