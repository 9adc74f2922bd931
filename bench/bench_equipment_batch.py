"""The EquipmentActor's `Ingest` of a batched call in-process: CPU per reading of the actor's own work.

    python -m bench.bench_equipment_batch [--machines 100] [--per 50] [--calls 20] [--repeats 5] [--profile]

What `bench_pipeline`'s 100 x 50 row sends the equipment app, without the HTTP turn: a real actor
(the app's `EquipmentActor`, its domain, codec and coalescing inference client) per simulated FD001
machine, warmed past its window, then calls of `--per` consecutive readings each, the argument as
the ingestion app sends it (JSON text). The sidecar is stubbed: the state manager keeps what is
saved, the publisher encodes each event as the Dapr one would (`event_json`), and inference is a
`DaprInferenceClient` over a fake client that decodes the request and answers one prediction per row
(the JSON both ways, no model). Prints µs of this process's CPU per reading, the fake inference's
left out (median of `--repeats`
runs of `--calls` calls round robin over the machines); `--profile` prints cProfile's top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import statistics
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
from dapr.actor import ActorId

from apps.common import cmapss
from apps.common.contracts import ModelCard, PredictRequest
from apps.common.features import FeatureSpec
from apps.common.profiles import TURBOFAN
from apps.common.publisher import event_json
from apps.equipment.actor import EquipmentActor
from apps.equipment.coalesce import CoalescingInference
from apps.equipment.ports import ActorDeps, DaprInferenceClient
from apps.equipment.settings import EquipmentSettings
from apps.training.quality import FEATURE_STATISTICS
from vigil.fleet import VALUE_COLUMNS, simulated_fleet

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = FeatureSpec(window=TURBOFAN.window, statistics=FEATURE_STATISTICS)


class FakeSidecar:
    """Inference by service invocation: the request decoded and validated as inference does, an
    answer with one prediction per row encoded as inference would; the served card."""

    spent = 0.0  # CPU seconds in here (inference's share): not counted as the actor's

    async def invoke_method(self, app_id: str, method: str, data: Any = None, **_: Any) -> Any:
        t0 = time.process_time()
        try:
            return self._answer(method, data)
        finally:
            FakeSidecar.spent += time.process_time() - t0

    def _answer(self, method: str, data: Any) -> Any:
        if method.startswith("v1/models/"):
            card = ModelCard.model_construct(version=1, features=SPEC, alert_thresholds=None)
            return SimpleNamespace(data=card)
        request = PredictRequest.model_validate_json(data)
        answer = {
            "predictions": [
                {"value": 100.0 + i % 7, "model_name": request.model_name, "model_version": 1}
                for i in range(len(request.rows))
            ],
            "model_name": request.model_name,
            "model_version": 1,
        }
        return SimpleNamespace(data=json.dumps(answer).encode())


class CardClient(DaprInferenceClient):
    async def served_card(self, model_name: str) -> ModelCard:
        return (await self.client.invoke_method("inference", f"v1/models/{model_name}")).data  # type: ignore[no-any-return]


class Published:
    def __init__(self) -> None:
        self.events: Counter[str] = Counter()

    async def publish(self, topic: str, event: Any) -> None:
        event_json(event)
        self.events[topic] += 1

    async def publish_many(self, topic: str, events: list[Any]) -> None:
        for event in events:
            await self.publish(topic, event)


class Store:
    def __init__(self) -> None:
        self.pending: str | None = None
        self.saved = 0

    async def set_state(self, key: str, value: str) -> None:
        self.pending = value

    async def save_state(self) -> None:
        self.saved += 1

    async def try_get_state(self, key: str) -> tuple[bool, Any]:
        return False, None


async def _no_reminder(*_: Any) -> None:
    """The silence reminder's registration is the sidecar's business (once per machine)."""


def actors(n: int, published: Published) -> list[EquipmentActor]:
    settings = EquipmentSettings()
    inference = CoalescingInference(CardClient(FakeSidecar()))  # type: ignore[arg-type]
    deps = ActorDeps(inference, published, settings, started_at=0.0)  # type: ignore[arg-type]
    out = []
    for i in range(n):
        actor = EquipmentActor.__new__(EquipmentActor)  # no SDK runtime: only what the methods use
        actor.id = ActorId(f"b-{i:04d}")
        actor._deps = deps
        actor._state_manager = Store()  # type: ignore[assignment]
        actor._state = None
        actor._last_health_at = 0.0
        actor._last_status = None
        actor._saved = None
        actor._turn = asyncio.Lock()
        actor._check_stretched = False
        actor.register_reminder = _no_reminder  # type: ignore[method-assign]
        out.append(actor)
    return out


def bodies(machines: int, per: int, first_seq: int, calls: int) -> list[tuple[int, str]]:
    """(machine, Ingest argument) for `calls` calls of `per` readings, round robin over machines."""
    fleet = simulated_fleet(cmapss.load_train(), machines, seed=100, max_shift=0, prefix="b-")
    rows = [np.asarray(m.trajectory[:, 2:], dtype=np.float64).tolist() for m in fleet.machines]
    out = []
    seqs = [first_seq] * machines
    for c in range(calls):
        m = c % machines
        readings = []
        for s in range(seqs[m], seqs[m] + per):
            values = dict(zip(VALUE_COLUMNS, rows[m][(s - 1) % len(rows[m])], strict=True))
            stamp = (T0 + timedelta(seconds=s)).isoformat()
            readings.append(
                {
                    "equipment_id": f"b-{m:04d}",
                    "profile": "turbofan",
                    "timestamp": stamp,
                    "seq": s,
                    "values": values,
                }
            )
        seqs[m] += per
        out.append((m, json.dumps(readings)))
    return out


async def run(args: argparse.Namespace) -> tuple[list[float], Counter[str]]:
    published = Published()
    fleet = actors(args.machines, published)
    warm = TURBOFAN.window + 1
    for m, body in bodies(args.machines, warm, 1, args.machines):
        await fleet[m].ingest(body)
    results = []
    first = warm + 1
    profiler = cProfile.Profile() if args.profile else None
    for _ in range(args.repeats):
        work = bodies(args.machines, args.per, first, args.calls)
        first += args.per * -(-args.calls // args.machines)
        if profiler:
            profiler.enable()
        t0, fake = time.process_time(), FakeSidecar.spent
        for m, body in work:
            await fleet[m].ingest(body)
        spent = time.process_time() - t0 - (FakeSidecar.spent - fake)
        results.append(spent * 1e6 / (args.calls * args.per))
        if profiler:
            profiler.disable()
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    return results, published.events


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--machines", type=int, default=100)
    parser.add_argument("--per", type=int, default=50, help="readings per call")
    parser.add_argument("--calls", type=int, default=100, help="calls per run")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile's top functions too")
    args = parser.parse_args()
    results, published = asyncio.run(run(args))
    print(f"published, whole run (warm-up included): {dict(published)}")
    print(
        f"Ingest of {args.per} readings: {statistics.median(results):.0f} µs CPU per reading, "
        f"min {min(results):.0f} "
        f"(median of {args.repeats}: {', '.join(f'{r:.0f}' for r in results)})"
    )


if __name__ == "__main__":
    main()
