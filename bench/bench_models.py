"""Model quality on C-MAPSS (not a timed test): choose on training machines, look at the test set once.

For each C-MAPSS subset (FD001, FD002): every candidate feature set is scored by grouped cross-validation on
truncated runs of the training machines (apps/training/quality.py); the best by capped CV RMSE is
refitted on all training machines (timed), exported to ONNX, checked against scikit-learn's API
within 1e-4 on the training rows, and only then scored on the test units: the last cycle of every
unit, short ones padded. ONNX Runtime's predictions are the ones scored.

AI4I 2020 (milling, the `failure` kind): the calibrated classifier is fitted on the first 80% of the
readings and scored on the last 20% (ROC-AUC, F1 at the profile's warning probability).

    .venv/bin/python -m bench.bench_models            # ~6 minutes on 2 cores
    .venv/bin/python -m bench.bench_models --subsets FD001 AI4I --folds 2
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np

from apps.common import cmapss
from apps.common.profiles import TURBOFAN, EquipmentProfile, get_profile
from apps.training.failure import (
    export_failure_onnx,
    failure_features,
    failure_metrics,
    temporal_split,
    train_failure_model,
)
from apps.training.quality import (
    build_padded_set,
    export_lightgbm,
    fit_conditions,
    float32_thresholds,
    grouped_cv,
    last_features,
    lightgbm,
    score,
)
from apps.training.trainer import DEFAULT_RUL_CAP, check_onnx_matches, onnx_predict
from vigil.history import ai4i_history

AI4I_FILE: Final = Path(__file__).parents[2] / "shared" / "data" / "ai4i2020" / "ai4i2020.csv"

RESULTS: Final = Path(__file__).parent / "results"
# (label, window, per-condition normalisation): the variants grouped CV chooses between.
CANDIDATES: Final = (("w30 raw", 30, False), ("w30 cond", 30, True), ("w60 cond", 60, True))
TARGETS: Final = {"FD001": 10.5, "FD002": 11.5}


@dataclasses.dataclass
class Row:
    subset: str
    chosen: str
    cv: dict[str, float]
    test: dict[str, float]
    fit_seconds: float
    onnx_diff: float
    y_true: np.ndarray
    y_pred: np.ndarray


def run_subset(subset: str, folds: int) -> Row:
    train = cmapss.load_train(subset)
    cv: dict[str, dict[str, float]] = {}
    for label, window, normalise in CANDIDATES:
        profile = dataclasses.replace(TURBOFAN, window=window)
        cv[label] = grouped_cv(train, profile, lightgbm, normalise=normalise, folds=folds)
        print(f"  {subset} CV {label:9s} capped RMSE {cv[label]['rmse_capped']:.2f}", flush=True)
    chosen = min(cv, key=lambda k: cv[k]["rmse_capped"])
    _, window, normalise = next(c for c in CANDIDATES if c[0] == chosen)
    profile: EquipmentProfile = dataclasses.replace(TURBOFAN, window=window)

    started = time.perf_counter()
    conditions = fit_conditions(train, profile) if normalise else None
    ts = build_padded_set(train, profile, conditions, DEFAULT_RUL_CAP)
    model = lightgbm()
    model.fit(ts.X, ts.y)
    float32_thresholds(model)
    onnx_bytes = export_lightgbm(model, ts.X.shape[1])
    fit_seconds = time.perf_counter() - started
    diff = check_onnx_matches(model, onnx_bytes, ts.X)

    test, truth = cmapss.load_test(subset), cmapss.load_rul(subset)
    ids, X = last_features(test, profile, conditions)
    y_true = np.array([truth[u] for u in ids])
    y_pred = onnx_predict(onnx_bytes, X)
    return Row(
        subset,
        chosen,
        cv[chosen],
        score(y_true, y_pred, DEFAULT_RUL_CAP, len(test)),
        fit_seconds,
        diff,
        y_true,
        y_pred,
    )


def run_ai4i() -> None:
    profile = get_profile("milling")
    history = ai4i_history(AI4I_FILE, profile, datetime.now(UTC))
    block = history.blocks[0]
    failed = {e.seq for e in history.events if e.kind == "failure"}
    y = np.array([seq in failed for seq in block.seq.tolist()], dtype=np.float64)
    X = failure_features(np.column_stack([block.values[s] for s in profile.informative_sensors]), profile)
    fit, held = temporal_split(len(y))
    started = time.perf_counter()
    model = train_failure_model(X[fit], y[fit])
    onnx_bytes = export_failure_onnx(model, X.shape[1])
    fit_seconds = time.perf_counter() - started
    probability = onnx_predict(onnx_bytes, X[held])
    diff = float(np.max(np.abs(probability - model.predict_proba(X[held].astype(np.float32))[:, 1])))
    warning = float(profile.thresholds.warning_probability)  # type: ignore[union-attr]  # milling: a failure profile
    m = failure_metrics(y[held], probability, warning)
    print()
    print("| data | held out | failures | ROC-AUC | F1 at p >= warning | fit s | ONNX diff |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(
        f"| AI4I 2020 | last {m['rows']:.0f} readings | {m['positives']:.0f} | {m['roc_auc']:.3f} "
        f"| {m['f1']:.3f} (p >= {warning}) | {fit_seconds:.0f} | {diff:.1e} |"
    )


def plot(rows: list[Row], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot; `pip install -e '.[dev]'`)")
        return
    fig, axes = plt.subplots(1, len(rows), figsize=(6 * len(rows), 5), squeeze=False)
    for ax, row in zip(axes[0], rows, strict=True):
        capped = np.minimum(row.y_true, DEFAULT_RUL_CAP)
        order = np.argsort(capped)
        ax.plot(capped[order], "k-", label="true RUL (capped at 125)")
        ax.plot(row.y_pred[order], ".", label="ONNX prediction at the last cycle")
        ax.set_title(f"{row.subset} ({row.chosen}): RMSE {row.test['rmse_capped']:.2f}")
        ax.set_xlabel("test unit, by true RUL")
        ax.set_ylabel("RUL (cycles)")
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"plot: {path}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subsets", nargs="+", default=[*TARGETS, "AI4I"])
    parser.add_argument("--folds", type=int, default=3)
    args = parser.parse_args()
    rows = [run_subset(s, args.folds) for s in args.subsets if s in TARGETS]
    print()
    print(
        "| data | chosen by CV | CV RMSE capped | test RMSE capped (uncapped) | PHM08 | units | target "
        "| fit s | ONNX diff |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        t = r.test
        units = f"{round(t['coverage'] * len(r.y_true))}/{len(r.y_true)}"
        print(
            f"| {r.subset} | {r.chosen} | {r.cv['rmse_capped']:.2f} "
            f"| {t['rmse_capped']:.2f} ({t['rmse']:.2f}) "
            f"| {t['phm08_score']:.0f} | {units} | <= {TARGETS.get(r.subset, float('nan'))} "
            f"| {r.fit_seconds:.0f} | {r.onnx_diff:.1e} |"
        )
    if rows:
        plot(rows, RESULTS / f"models_{'_'.join(r.subset for r in rows)}.png")
    if "AI4I" in args.subsets:
        run_ai4i()


if __name__ == "__main__":
    main()
