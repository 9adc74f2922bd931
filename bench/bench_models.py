"""Model quality on C-MAPSS (not a timed test): choose on training machines, look at the test set once.

For each C-MAPSS subset (FD001, FD002), with the platform's own pipeline (apps/common/features.py:
the turbofan profile's window, per-operating-condition normalisation, padding; apps/training/quality.py):
every candidate (the platform's model, apps/training/quality.rul_model: LightGBM models averaged over
seeds, on the window statistics named) is scored by grouped cross-validation on truncated runs of the
training machines; the best by capped CV RMSE is refitted on all training machines as the training job
does (timed: the job's budget is two minutes), exported to ONNX, checked against LightGBM within 1e-4
on the training rows, and only then scored on the test units: the last cycle of every unit, short ones
padded. ONNX Runtime's predictions are the ones scored.

`--live` then starts the platform (tests/e2e/platform.py: every app with a localdapr sidecar), serves
each subset's model through the registry and `model-updates` as a promotion does, replays test units
into ingestion and checks that each machine's last prediction in its EquipmentActor equals the offline
one within 1e-6: the printed RMSE is what operators get.

AI4I 2020 (milling, the `failure` kind): the calibrated classifier is fitted on the first 80% of the
readings and scored on the last 20% (ROC-AUC, F1 at the profile's warning probability).

    .venv/bin/python -m bench.bench_models                      # ~25 minutes on 2 shared cores
    .venv/bin/python -m bench.bench_models --subsets FD001 AI4I --folds 2 --live 0
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np

from apps.common import cmapss
from apps.common.features import EXTRA_STATISTICS, STATISTICS, FeatureSpec
from apps.common.profiles import TURBOFAN, get_profile
from apps.training.failure import (
    export_failure_onnx,
    failure_features,
    failure_metrics,
    temporal_split,
    train_failure_model,
)
from apps.training.quality import (
    FEATURE_STATISTICS,
    build_padded_set,
    export_lightgbm,
    fit_spec,
    float32_thresholds,
    grouped_cv,
    last_features,
    rul_model,
    score,
)
from apps.training.trainer import DEFAULT_RUL_CAP, check_onnx_matches, make_model_card, onnx_predict
from vigil.history import ai4i_history

AI4I_FILE: Final = Path(__file__).parents[1] / "data" / "ai4i2020" / "ai4i2020.csv"

RESULTS: Final = Path(__file__).parent / "results"
# label -> (parameters over quality.LGBM_PARAMS and N_SEEDS, window statistics, health index): the
# variants grouped CV on training machines chooses between; the rest of the features is the platform's
# (the profile's window, per-condition normalisation). The first is what the training job fits.
LEAVES_31: Final = {"num_leaves": 31, "min_child_samples": 50}
CANDIDATES: Final[dict[str, tuple[dict[str, float | int], tuple[str, ...], bool]]] = {
    "lgbm x3": ({}, FEATURE_STATISTICS, True),
    # the trainer's before bench/cv_rul.py added the health index
    "lgbm x3 no health index": ({}, FEATURE_STATISTICS, False),
    "lgbm x3 leaves 31": (LEAVES_31, FEATURE_STATISTICS, True),
    "lgbm x1 six statistics": ({**LEAVES_31, "n_seeds": 1}, STATISTICS, False),  # FD001's model before
    # the trainer's before bench/cv_rul.py dropped the window's min and max
    "lgbm x3 with min max": ({}, (*STATISTICS, *EXTRA_STATISTICS), False),
}
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
    ids: list[int]
    onnx_bytes: bytes
    spec: FeatureSpec
    params: dict[str, Any]


def run_subset(subset: str, folds: int, labels: list[str]) -> Row:
    train = cmapss.load_train(subset)
    cv: dict[str, dict[str, float]] = {}
    for label in labels:
        params, statistics, health = CANDIDATES[label]
        started = time.perf_counter()
        cv[label] = grouped_cv(
            train,
            TURBOFAN,
            lambda p=params: rul_model(p),
            normalise=True,
            folds=folds,
            statistics=statistics,
            health_index=health,
        )
        print(
            f"  {subset} CV {label:24s} capped RMSE {cv[label]['rmse_capped']:.2f} "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
    chosen = min(cv, key=lambda k: cv[k]["rmse_capped"])
    params, statistics, health = CANDIDATES[chosen]

    started = time.perf_counter()  # what the training job does: spec, rows, fit, ONNX
    spec = fit_spec(train, TURBOFAN, statistics=statistics, health_index=health)
    ts = build_padded_set(train, TURBOFAN, spec, DEFAULT_RUL_CAP)
    model = rul_model(params)
    model.fit(ts.X, ts.y)
    float32_thresholds(model.model_)
    onnx_bytes = export_lightgbm(model.model_, ts.X.shape[1])
    fit_seconds = time.perf_counter() - started
    diff = check_onnx_matches(model, onnx_bytes, ts.X)

    test, truth = cmapss.load_test(subset), cmapss.load_rul(subset)
    ids, X = last_features(test, TURBOFAN, spec)
    y_true = np.array([truth[u] for u in ids])
    y_pred = onnx_predict(onnx_bytes, X)
    test_score = score(y_true, y_pred, DEFAULT_RUL_CAP, len(test))
    return Row(
        subset,
        chosen,
        cv[chosen],
        test_score,
        fit_seconds,
        diff,
        y_true,
        y_pred,
        ids,
        onnx_bytes,
        spec,
        model.get_params(),
    )


def run_live(rows: list[Row], n_units: int) -> None:
    """Each subset's model served by the live platform; its test units replayed; last predictions
    compared with the offline ones."""
    from tests.e2e.fleet_replay import predicted, replay, serve
    from tests.e2e.platform import start_platform, write_components

    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        components = write_components(Path(tmp) / "components", "embedded")
        env = {"VIGIL_TRAINING_TRAIN_IF_NO_CHAMPION": "false", "VIGIL_EQUIPMENT_HEALTH_PUBLISH_SECONDS": "0"}
        print("\n... starting the platform (embedded profile) for the live replay", flush=True)
        platform = start_platform(components, Path(tmp), env)
        try:
            os.environ["DAPR_HTTP_PORT"] = str(platform.apps["equipment"].sidecar.http_port)
            print("| data | model served | test units replayed | readings | max abs diff, last prediction |")
            print("|---|---|---:|---:|---:|")
            for version, row in enumerate(rows, start=1):
                train = cmapss.load_train(row.subset)
                ts = build_padded_set(train, TURBOFAN, row.spec, DEFAULT_RUL_CAP)
                card = make_model_card(
                    name=TURBOFAN.model_name,
                    version=version,
                    profile=TURBOFAN,
                    training_set=ts,
                    metrics=row.cv,
                    onnx_bytes=row.onnx_bytes,
                    rul_cap=DEFAULT_RUL_CAP,
                    params=row.params,
                    onnx_max_abs_diff=row.onnx_diff,
                    features=row.spec,
                )
                serve(platform, card, row.onnx_bytes)  # a hot swap from the second subset on
                test = cmapss.load_test(row.subset)
                # the shortest units (padded) and an even spread of the rest
                by_length = sorted(test, key=lambda u: len(test[u]))
                picked = sorted({*by_length[:2], *by_length[:: max(len(by_length) // n_units, 1)][:n_units]})
                units = {u: test[u] for u in picked}
                prefix = f"bench-{row.subset.lower()}-"
                replay(platform, units, prefix, cycles_per_batch=50)
                got = predicted(platform, units, prefix)
                offline = dict(zip(row.ids, row.y_pred, strict=True))
                diffs = [abs(got[u][-1]["predicted_rul"] - offline[u]) for u in picked]
                assert all(got[u][-1]["model_version"] == version for u in picked)
                readings = sum(len(t) for t in units.values())
                print(
                    f"| {row.subset} test | v{version} | {len(picked)} | {readings} "
                    f"| {max(diffs):.1e} ({'equal within 1e-6' if max(diffs) <= 1e-6 else 'DIFFERENT'}) |",
                    flush=True,
                )
        finally:
            platform.stop()


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
    parser.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    parser.add_argument(
        "--live", type=int, default=10, metavar="N", help="test units per subset replayed live (0: none)"
    )
    args = parser.parse_args()
    rows = [run_subset(s, args.folds, args.candidates) for s in args.subsets if s in TARGETS]
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
    if rows and args.live:
        run_live(rows, args.live)
    if "AI4I" in args.subsets:
        run_ai4i()


if __name__ == "__main__":
    main()
