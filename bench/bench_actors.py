"""Actor calls through localdapr: one hot actor id vs 1,000 ids, with and without a state save in the
method, beside a plain HTTP call to the same app (so the actor path's overhead shows as a ratio).

The client sends exactly what the SDK's ActorProxy sends (`POST /v1.0/actors/{type}/{id}/method/{m}`
with a JSON body) from several threads; with one hot id the calls queue for the actor's turn.

    python -m bench.bench_actors [--ops 2000] [--concurrency 8] [--backends in-memory,sqlite,redis]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import httpx

from bench.bench_sidecar import REDIS_HOST, redis_up
from bench.common import Result, measure, table
from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port
from tests.integration.localdapr.components import state_component

REPO = Path(__file__).resolve().parents[1]
APP = "bench.apps.bench_actor_app:app"
TYPE = "BenchActor"


def resources(folder: Path, backend: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "state.yaml").write_text(
        state_component(backend, folder, redis=REDIS_HOST, extra={"actorStateStore": "true"})
    )
    return folder


def run_backend(backend: str, ops: int, concurrency: int, tmp: Path) -> list[Result]:
    res = resources(tmp / backend, backend)
    app_port = free_port()
    app_id = f"bench-actors-{backend}-{os.getpid()}"
    sidecar = SidecarThread(
        SidecarOptions(app_id=app_id, resources_paths=[res], app_port=app_port, registry_dir=tmp / "reg")
    ).start()
    app = AppProcess(APP, app_port, sidecar.options.app_env(), cwd=REPO, name=app_id).start()
    sidecar.wait_app_ready()
    payload = json.dumps({"machine": "unit-1", "rul": 87.5, "sensors": list(range(20))})
    headers = {"Content-Type": "application/json; charset=utf-8"}
    api = f"http://127.0.0.1:{sidecar.http_port}/v1.0/actors/{TYPE}"
    rows: list[Result] = []
    limits = httpx.Limits(max_connections=concurrency * 2, max_keepalive_connections=concurrency * 2)
    try:
        with httpx.Client(limits=limits, timeout=60) as http:

            def actor_call(method: str, ids: int) -> None:
                def op(i: int) -> None:
                    r = http.post(f"{api}/bench-{i % ids}/method/{method}", content=payload, headers=headers)
                    if r.status_code != 200:
                        raise RuntimeError(f"actor call failed: {r.status_code} {r.text}")

                label = "1 hot id" if ids == 1 else f"{ids:,} ids"
                what = "actor call + state save" if method == "Save" else "actor call"
                rows.append(measure(f"{what}, {label}", backend, op, ops, concurrency))

            if backend == "in-memory":
                url = f"http://127.0.0.1:{app_port}/echo"
                rows.append(
                    measure(
                        "plain HTTP to the app",
                        "direct",
                        lambda i: http.post(url, content=payload, headers=headers),
                        ops,
                        concurrency,
                    )
                )
                actor_call("Echo", 1)
                actor_call("Echo", 1000)
            actor_call("Save", 1)
            actor_call("Save", 1000)
    finally:
        app.stop()
        sidecar.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--backends", default="in-memory,sqlite,redis")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b != "redis" or redis_up()]
    rows: list[Result] = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in backends:
            print(f"... {backend}", flush=True)
            rows += run_backend(backend, args.ops, args.concurrency, Path(tmp))
    print(
        f"\nlocaldapr actor benchmark: {args.ops} calls per row, {args.concurrency} client threads; "
        "ratio = p50 against the plain HTTP call to the same app\n"
    )
    baseline = "plain HTTP to the app"
    print(table(rows, {r.name: baseline for r in rows if r.name != baseline}))
    if "redis" in args.backends and "redis" not in backends:
        print("\n(Redis unreachable at 127.0.0.1:6379: Redis rows skipped)")


if __name__ == "__main__":
    main()
