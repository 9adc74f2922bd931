"""The ingestion app's own CPU per reading for gateway batches, in-process (issue 13, the 100 x 50 row).

    python -m bench.bench_ingestion_batch [--machines 100] [--per 50] [--repeats 7]

One POST /v1/readings of `--machines` x `--per` readings (5,000: the gateway batch) through the
ingestion app's whole middleware stack, as bench_ingestion_route drives it, with the equipment actors
answering at once and the publisher serialising what it is given (bench_ingestion_route's stubs), one
request at a time; then the parts alone on the same body: the request guard's nesting check
(`json_depth`), decoding (`parse_json`), `validate_batch`. Prints µs of this process's CPU per reading,
median of `--repeats` requests (min, max).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from apps.common.httpguard import json_depth
from apps.common.profiles import PROFILES
from apps.ingestion import app as ingestion_app
from apps.ingestion.service import parse_json
from apps.ingestion.validation import validate_batch
from bench.bench_ingestion_route import _service, reading
from bench.common import asgi_post


def body_of(machines: int, per: int, first_seq: int) -> bytes:
    items = [reading(m, s) for m in range(machines) for s in range(first_seq, first_seq + per)]
    return json.dumps({"readings": items}).encode()


async def post(body: bytes) -> float:
    """CPU seconds of one request through the app."""
    app = ingestion_app.app
    service = _service()
    app.state.service = service
    started = time.process_time()
    status, answer = await asgi_post(app, ingestion_app.READINGS_PATH, body, port=8001)
    spent = time.process_time() - started
    await service.close()
    if status != 200:
        raise SystemExit(f"the route answered {status}: {answer[:300]!r}")
    return spent


def timed(part: Callable[[], object]) -> float:
    started = time.process_time()
    part()
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--machines", type=int, default=100)
    parser.add_argument("--per", type=int, default=50, help="readings per machine in the request")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    n = args.machines * args.per
    bodies = [body_of(args.machines, args.per, 1 + r * args.per) for r in range(args.repeats + 1)]
    asyncio.run(post(bodies[-1]))  # warm-up: imports, caches, first-call costs
    now = datetime(2026, 1, 1, tzinfo=UTC)
    decoded = {b: parse_json(b) for b in bodies}
    stages: dict[str, Callable[[bytes], float]] = {
        "route (whole app)": lambda b: asyncio.run(post(b)),
        "json_depth (request guard)": lambda b: timed(lambda: json_depth(b)),
        "parse_json": lambda b: timed(lambda: parse_json(b)),
        "validate_batch": lambda b: timed(lambda: validate_batch(decoded[b], PROFILES, now)),
    }
    print(f"{n:,} readings a request ({args.machines} machines x {args.per}); median of {args.repeats}\n")
    print("| stage | µs CPU per reading (median) | min | max |")
    print("|---|---:|---:|---:|")
    for name, stage in stages.items():
        runs = [stage(b) * 1e6 / n for b in bodies[: args.repeats]]
        print(f"| {name} | {statistics.median(runs):.1f} | {min(runs):.1f} | {max(runs):.1f} |")


if __name__ == "__main__":
    main()
