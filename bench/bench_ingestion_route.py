"""CPU per reading of the ingestion app's own work, in-process (issue 13: the ingestion hop).

The pipeline bench measures the ingestion process as a whole, under whatever else the machine runs;
this one takes the parts apart, with the sidecar and the equipment actor replaced by stubs that
answer at once, so what is counted is the app's code alone:

- route: POST /v1/readings through the whole ASGI app (middleware, route, service, linger, hand-off),
  one reading per request, many requests in flight (as bench_pipeline's 1,000 machines x 1 reading);
- service: IngestionService.ingest on the decoded body (validation, linger, hand-off), no HTTP;
- validation: validate_batch alone;
- actor call: ActorEquipmentGateway.ingest (the SDK's ActorProxy, its serialisation and the answer's
  parsing) with the HTTP send itself stubbed.

CPU seconds of this process (time.process_time) per reading, median of --repeats runs.
Run: nice -n 10 .venv/bin/python -m bench.bench_ingestion_route [--readings 2000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from dapr.clients.health import DaprHealth
from pydantic import BaseModel

from apps.common.contracts import EquipmentIngestResult, HealthSnapshot, Reading
from apps.common.profiles import PROFILES
from apps.ingestion import app as ingestion_app
from apps.ingestion.linger import LingeringEquipment
from apps.ingestion.service import IngestionService
from apps.ingestion.validation import validate_batch
from bench.common import asgi_post

MACHINES = 1000
IN_FLIGHT = 64  # requests in flight at once (the pipeline's load generator keeps many open)
NOW = datetime(2026, 1, 1, tzinfo=UTC)
_CHANNELS = PROFILES["turbofan"].channels


def reading(machine: int, seq: int) -> dict[str, Any]:
    return {
        "equipment_id": f"engine-{machine:04d}",
        "profile": "turbofan",
        "timestamp": (NOW + timedelta(seconds=seq)).isoformat(),
        "seq": seq,
        # every channel of the profile (as a C-MAPSS engine sends), inside its plausible range
        "values": {
            name: (low + high) / 2 + (seq % 100) * (high - low) * 1e-4
            for name, (low, high) in _CHANNELS.items()
        },
    }


def _health(equipment_id: str, last_seq: int) -> HealthSnapshot:
    return HealthSnapshot(
        equipment_id=equipment_id,
        profile="turbofan",
        last_seq=last_seq,
        readings_applied=last_seq + 1,
        duplicates=0,
        status="ok",
        updated_at=NOW,
    )


class InstantEquipment:
    """The EquipmentActor, answering at once (what the actor answers, built as it would parse it)."""

    async def ingest(self, equipment_id: str, readings: list[Reading]) -> EquipmentIngestResult:
        await asyncio.sleep(0)
        return EquipmentIngestResult(
            accepted=len(readings), duplicates=0, health=_health(equipment_id, readings[-1].seq)
        )


class NullPublisher:
    def __init__(self) -> None:
        self.published = 0

    async def publish(self, topic: str, event: BaseModel | dict) -> None:
        # Serialised as DaprPublisher would, so the hand-off's payload cost is counted.
        self.published += len(event.model_dump_json() if isinstance(event, BaseModel) else json.dumps(event))


def _service() -> IngestionService:
    return IngestionService(
        LingeringEquipment(InstantEquipment(), 0.002), NullPublisher(), PROFILES, 32, 0.02
    )


async def _run_all(jobs: list[Callable[[], Awaitable[None]]]) -> None:
    queue = iter(jobs)

    async def worker() -> None:
        for job in queue:
            await job()

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


async def _route(n: int, round_: int) -> float:
    app = ingestion_app.app
    service = _service()
    app.state.service = service
    bodies = [json.dumps([reading(i % MACHINES, round_ * n + i)]).encode() for i in range(n)]
    statuses: list[int] = []

    def call(body: bytes) -> Callable[[], Awaitable[None]]:
        async def one() -> None:
            status, answer = await asgi_post(app, ingestion_app.READINGS_PATH, body, port=8001)
            statuses.append(status)
            if status != 200:
                print(answer[:300])

        return one

    started = time.process_time()
    await _run_all([call(b) for b in bodies])
    spent = time.process_time() - started
    await service.close()
    if statuses != [200] * n:
        raise SystemExit(f"route answered {sorted(set(statuses))}, not all 200")
    return spent


async def _service_only(n: int, round_: int) -> float:
    service = _service()
    batches = [[reading(i % MACHINES, round_ * n + i)] for i in range(n)]
    accepted = 0

    def call(batch: list[dict[str, Any]]) -> Callable[[], Awaitable[None]]:
        async def one() -> None:
            nonlocal accepted
            result = await service.ingest(batch, source="http")
            accepted += result.accepted  # after the await: `x += await ...` reads x before awaiting

        return one

    started = time.process_time()
    await _run_all([call(b) for b in batches])
    spent = time.process_time() - started
    await service.close()
    if accepted != n:
        raise SystemExit(f"service accepted {accepted} of {n}")
    return spent


async def _validation(n: int, round_: int) -> float:
    batches = [[reading(i % MACHINES, round_ * n + i)] for i in range(n)]
    started = time.process_time()
    good = sum(len(validate_batch(b, PROFILES, datetime.now(UTC))[0]) for b in batches)
    spent = time.process_time() - started
    if good != n:
        raise SystemExit(f"validation passed {good} of {n}")
    return spent


async def _actor_call(n: int, round_: int) -> float:
    # No sidecar here: the SDK's constructor would wait for one (send_bytes is stubbed below).
    DaprHealth.wait_for_sidecar = staticmethod(lambda: None)  # type: ignore[method-assign]
    gateway = ingestion_app.ActorEquipmentGateway()
    answers = {
        i: EquipmentIngestResult(
            accepted=1, duplicates=0, health=_health(f"engine-{i:04d}", 0)
        ).model_dump_json()
        for i in range(MACHINES)
    }
    client = gateway.factory._dapr_client._client  # type: ignore[attr-defined]

    async def send_bytes(method: str, url: str, data: bytes | None, **_: Any) -> tuple[bytes, None]:
        # What the sidecar would answer: the actor's return value, JSON-encoded by the SDK.
        machine = int(url.split("/actors/")[1].split("/")[1].removeprefix("engine-"))
        return json.dumps(answers[machine]).encode(), None

    client.send_bytes = send_bytes
    readings = [Reading.model_validate(reading(i % MACHINES, round_ * n + i)) for i in range(n)]
    accepted = 0
    started = time.process_time()
    for r in readings:
        result = await gateway.ingest(r.equipment_id, [r])
        accepted += result.accepted
    spent = time.process_time() - started
    await gateway.close()
    if accepted != n:
        raise SystemExit(f"actor calls accepted {accepted} of {n}")
    return spent


STAGES: dict[str, Callable[[int, int], Awaitable[float]]] = {
    "route (whole app)": _route,
    "service.ingest": _service_only,
    "validate_batch": _validation,
    "actor call (proxy)": _actor_call,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=2000, help="readings (= requests) per run")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.readings < 1 or args.repeats < 1:
        parser.error("--readings and --repeats must be at least 1")
    print(f"{args.readings} readings, 1 per request, {IN_FLIGHT} in flight; median of {args.repeats} runs\n")
    print("| stage | µs CPU per reading (median) | min | max |")
    print("|---|---:|---:|---:|")
    for name, stage in STAGES.items():
        asyncio.run(stage(200, 10_000))  # warm-up: imports, caches, first-call costs
        runs = [asyncio.run(stage(args.readings, r)) * 1e6 / args.readings for r in range(args.repeats)]
        print(f"| {name} | {statistics.median(runs):.0f} | {min(runs):.0f} | {max(runs):.0f} |")


if __name__ == "__main__":
    main()
