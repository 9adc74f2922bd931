"""Inference throughput: ONNX Runtime (what the inference service serves) beside scikit-learn's own
predict, on a GradientBoosting model trained on FD001 features with the training service's code.

    python -m bench.bench_inference [--n-estimators 100] [--seconds 2]

Rows/s come from the median time of one call at each batch size (1 = one machine's prediction,
256 = a micro-batch of concurrent requests coalesced into one session run).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

from apps.common import cmapss
from apps.common.profiles import TURBOFAN
from apps.training.trainer import (
    ONNX_INPUT_NAME,
    build_training_set,
    check_onnx_matches,
    export_onnx,
    train_model,
)

BATCH_SIZES = (1, 256)


def median_call_seconds(
    call: Callable[[int], object], seconds: float, min_calls: int = 50
) -> tuple[float, int]:
    """Median wall time of `call(i)` over about `seconds` of calls (after a short warm-up)."""
    for i in range(10):
        call(i)
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < min_calls or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        call(len(times))
        times.append(time.perf_counter() - t0)
    return statistics.median(times), len(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-estimators", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=2.0, help="timing per cell")
    args = parser.parse_args()

    import onnxruntime as ort

    print(f"... training GradientBoosting ({args.n_estimators} trees) on FD001 features", flush=True)
    ts = build_training_set(cmapss.load_train(), TURBOFAN)
    model = train_model(ts.X, ts.y, {"n_estimators": args.n_estimators})
    onnx_bytes = export_onnx(model, ts.X.shape[1])
    diff = check_onnx_matches(model, onnx_bytes, ts.X)
    options = ort.SessionOptions()
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    rows_f64 = ts.X[rng.permutation(len(ts.X))]
    rows_f32 = rows_f64.astype(np.float32)

    results: list[tuple[int, str, float, int]] = []
    for batch in BATCH_SIZES:
        n_slices = len(rows_f64) // batch

        def sk(i: int, batch: int = batch, n: int = n_slices) -> object:
            start = (i % n) * batch
            return model.predict(rows_f64[start : start + batch])

        def onnx(i: int, batch: int = batch, n: int = n_slices) -> object:
            start = (i % n) * batch
            return session.run(None, {ONNX_INPUT_NAME: rows_f32[start : start + batch]})

        for backend, call in (("scikit-learn", sk), ("ONNX Runtime", onnx)):
            median, calls = median_call_seconds(call, args.seconds)
            results.append((batch, backend, median, calls))

    print(
        f"\ninference benchmark: GradientBoostingRegressor, {args.n_estimators} trees, "
        f"{ts.X.shape[1]} features, ONNX max abs diff {diff:.1e}; median of >= 50 calls per row\n"
    )
    print("| batch | backend | median ms/call | rows/s | vs scikit-learn |")
    print("|---:|---|---:|---:|---:|")
    base = {b: m for b, name, m, _ in results if name == "scikit-learn"}
    for batch, backend, median, _ in results:
        ratio = base[batch] / median
        print(f"| {batch} | {backend} | {median * 1000:.3f} | {batch / median:,.0f} | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
