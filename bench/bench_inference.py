"""Inference throughput: ONNX Runtime (what the inference service serves) beside LightGBM's own predict,
on a model trained on FD001 features with the training service's code (apps/training/quality.py).

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
from apps.training.quality import build_padded_set, export_lightgbm, fit_spec, float32_thresholds, lightgbm
from apps.training.trainer import ONNX_INPUT_NAME, check_onnx_matches

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

    print(f"... training LightGBM ({args.n_estimators} trees) on FD001 features", flush=True)
    train = cmapss.load_train()
    ts = build_padded_set(train, TURBOFAN, fit_spec(train, TURBOFAN), 125.0)
    model = lightgbm({"n_estimators": args.n_estimators})
    model.fit(ts.X, ts.y)
    float32_thresholds(model)
    onnx_bytes = export_lightgbm(model, ts.X.shape[1])
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

        for backend, call in (("LightGBM", sk), ("ONNX Runtime", onnx)):
            median, calls = median_call_seconds(call, args.seconds)
            results.append((batch, backend, median, calls))

    print(
        f"\ninference benchmark: LightGBM, {args.n_estimators} trees, "
        f"{ts.X.shape[1]} features, ONNX max abs diff {diff:.1e}; median of >= 50 calls per row\n"
    )
    print("| batch | backend | median ms/call | rows/s | vs LightGBM |")
    print("|---:|---|---:|---:|---:|")
    base = {b: m for b, name, m, _ in results if name == "LightGBM"}
    for batch, backend, median, _ in results:
        ratio = base[batch] / median
        print(f"| {batch} | {backend} | {median * 1000:.3f} | {batch / median:,.0f} | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
