"""CPU per predicted row of the inference app's own work, in-process (issue 13: the downstream hops).

The pipeline bench measures the inference process as a whole; this one drives POST /v1/predict through
the whole ASGI app (middlewares, route, body parsing and validation, micro-batcher, ONNX Runtime run,
input counts, the answer's JSON) with no sidecar and no network: requests as the equipment app's
coalescer sends them (a few machines' rows of the turbofan profile's 85 features at full float
precision), many in flight. A small LightGBM model exported to ONNX as training exports it, served from
an in-memory registry.

CPU seconds of this process (time.process_time, the batcher's worker thread included) per predicted row,
median of --repeats runs.
Run: nice -n 10 .venv/bin/python -m bench.bench_inference_route [--requests 2000] [--rows 4] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import time
from datetime import UTC, datetime

import numpy as np

from apps.common.contracts import ModelCard
from apps.common.registry import ModelVersion
from apps.inference import app as inference_app
from apps.inference.service import InferenceService
from apps.inference.settings import InferenceSettings
from apps.training.quality import export_lightgbm, float32_thresholds, lightgbm
from bench.common import asgi_post

MODEL = "bench-rul"
N_FEATURES = 85  # the turbofan profile's feature count
FEATURES = [f"f{i}" for i in range(N_FEATURES)]
IN_FLIGHT = 16


class _Registry:
    """One registered, promoted version (the ModelRegistry protocol, as far as the service asks)."""

    def __init__(self, found: ModelVersion) -> None:
        self.found = found

    async def champion_version(self, name: str) -> int | None:
        return 1

    async def get(self, name: str, version: int) -> ModelVersion | None:
        return self.found


def _model() -> ModelVersion:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, N_FEATURES)).astype(np.float32).astype(np.float64)
    y = 100 + 30 * X[:, 0] - 10 * X[:, 1] + rng.normal(scale=2, size=500)
    model = lightgbm({"n_estimators": 100, "num_leaves": 15, "random_state": 1})
    model.fit(X, y)
    float32_thresholds(model)
    onnx = export_lightgbm(model, N_FEATURES)
    card = ModelCard(
        name=MODEL,
        version=1,
        created_at=datetime.now(UTC),
        profile="turbofan",
        feature_names=FEATURES,
        metrics={"rmse": 1.0},
        training_data_fingerprint="0" * 64,
        rul_cap=125,
        n_train_rows=500,
        n_train_units=1,
        onnx_sha256=hashlib.sha256(onnx).hexdigest(),
    )
    return ModelVersion(card, onnx)


def _bodies(n: int, rows: int) -> list[bytes]:
    rng = np.random.default_rng(7)
    return [
        json.dumps(
            {
                "model_name": MODEL,
                "model_version": 1,
                "feature_names": FEATURES,
                "rows": (rng.normal(size=(rows, N_FEATURES)) * 100).tolist(),
            }
        ).encode()
        for _ in range(n)
    ]


async def _route(service: InferenceService, bodies: list[bytes], rows: int) -> float:
    inference_app.app.state.service = service
    queue = iter(bodies)
    answered = 0

    async def worker() -> None:
        nonlocal answered
        for body in queue:
            status, answer = await asgi_post(inference_app.app, inference_app.PREDICT_PATH, body, 8003)
            if status != 200:
                raise SystemExit(f"predict answered {status}: {answer[:300]!r}")
            answered += answer.count(b'"value"')

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    spent = time.process_time() - started
    if answered != len(bodies) * rows:
        raise SystemExit(f"{answered} predictions for {len(bodies) * rows} rows")
    return spent


async def main_async(args: argparse.Namespace) -> None:
    settings = InferenceSettings(model_names=[MODEL])
    service = InferenceService(_Registry(_model()), settings)
    await service.refresh_all()
    bodies = _bodies(args.requests, args.rows)
    await _route(service, bodies[: min(200, len(bodies))], args.rows)  # warm-up
    per_row = []
    for _ in range(args.repeats):
        spent = await _route(service, bodies, args.rows)
        per_row.append(spent / (args.requests * args.rows) * 1e6)
    await service.close()
    size = statistics.median(len(b) for b in bodies)
    print(
        f"POST /v1/predict, {args.requests} requests of {args.rows} rows x {N_FEATURES} features "
        f"(~{size / 1024:.1f} KiB a body), {IN_FLIGHT} in flight"
    )
    print("| part | us CPU per row (median) | runs |")
    print("|---|---:|---|")
    print(f"| whole route | {statistics.median(per_row):.0f} | {', '.join(f'{v:.0f}' for v in per_row)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=4, help="rows a request (the coalescer's share)")
    parser.add_argument("--repeats", type=int, default=5)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
