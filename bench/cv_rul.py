"""Grouped CV of RUL model variants on C-MAPSS training machines, scored at every cut (not timed).

Issue 11's rule: choose on training machines only. Folds are whole machines (the platform's: 3, seed
11, `quality.grouped_cv`'s order); the conditions and everything else are refitted on each fold's
training machines. Instead of a few random cuts per held-out run, every cut is scored: the features
are causal (a window ends at each reading), so the prediction after reading t of a full run is the one
a run truncated at t gets. Each held-out run weighs the same (its cuts 1/len each): the expectation
of `truncate_runs`' uniform cuts, without their sampling noise, and every variant is scored on the
same folds and cuts (paired differences).

A fit variant (training-target cap, monotone age) is fitted once per fold with `--rounds` rounds per
seed; fewer rounds are read from the same models (the first n trees of a LightGBM fit are the fit of n
rounds). Post-processing variants (smoothing a unit's prediction over its own recent predictions,
`shifted_mean`) cost nothing more: they run on the stored per-cycle predictions.

    nice -n 10 .venv/bin/python -m bench.cv_rul --subsets FD001 --fits base cap120 monotone
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from apps.common import cmapss
from apps.common.features import AGE_FEATURE, EXTRA_STATISTICS, STATISTICS, _window_features
from apps.common.profiles import TURBOFAN
from apps.training.quality import (
    FEATURE_STATISTICS,
    HEALTH_EARLY_READINGS,
    LGBM_PARAMS,
    N_SEEDS,
    build_padded_set,
    fit_spec,
    last_features,
    reading_rows,
    unit_features,
)
from apps.training.trainer import DEFAULT_RUL_CAP

RESULTS: Final = Path(__file__).parent / "results"
FOLDS: Final = 3
SEED: Final = 11  # quality.grouped_cv's default: the same folds as bench_models

# The trainer's statistics before this script chose to drop min and max: the six and the recent four.
WITH_MIN_MAX: Final = (*STATISTICS, *EXTRA_STATISTICS)
# label -> (training-target cap, options): `monotone_age` (the prediction never rises with the age),
# `statistics` (window statistics other than the trainer's), `spec_hi` / `spec_early` (the feature
# spec's health index / its from_start readings, apps/common/features.py), `baseline`, `health`,
# `hi_ewm`, `hi_baseline` (features screened outside the pipeline: `Augment`); anything else is a
# LightGBM parameter. A label's spec has no health index unless it says so.
FITS: Final[dict[str, tuple[float, dict[str, Any]]]] = {
    "base": (DEFAULT_RUL_CAP, {"statistics": WITH_MIN_MAX}),
    "cap120": (120.0, {"statistics": WITH_MIN_MAX}),
    "cap115": (115.0, {"statistics": WITH_MIN_MAX}),
    "cap130": (130.0, {"statistics": WITH_MIN_MAX}),
    "monotone": (DEFAULT_RUL_CAP, {"monotone_age": True, "statistics": WITH_MIN_MAX}),
    # feature selection: the window's extremes are its noisiest statistics (the trainer's now)
    "no-min-max": (DEFAULT_RUL_CAP, {"statistics": FEATURE_STATISTICS}),
    # screened here before any of it entered the pipeline (issue 11's ideas): early-life baselines,
    # a linear health index, both
    "base20": (DEFAULT_RUL_CAP, {"baseline": 20}),
    "hi": (DEFAULT_RUL_CAP, {"health": True}),
    "hi-base20": (DEFAULT_RUL_CAP, {"health": True, "baseline": 20}),
    "hi-win": (DEFAULT_RUL_CAP, {"health": True, "hi_ewm": False}),
    "hi-win-hb20": (DEFAULT_RUL_CAP, {"health": True, "hi_ewm": False, "hi_baseline": 20}),
    "hi-hb20": (DEFAULT_RUL_CAP, {"health": True, "hi_baseline": 20}),
    # the trainer's: the health index of the feature spec (apps/common/features.HealthIndex) and its
    # from_start (the same as hi-win-hb20, through the pipeline); without from_start (hi-win)
    "trainer": (DEFAULT_RUL_CAP, {"spec_hi": True}),
    "trainer-no-early": (DEFAULT_RUL_CAP, {"spec_hi": True, "spec_early": 0}),
}
_AUGMENT: Final = ("baseline", "health", "hi_ewm", "hi_baseline", "spec_hi", "spec_early")


def fold_predictions(subset: str, label: str, rounds: int, read_rounds: list[int]) -> dict[str, Any]:
    """Per held-out cycle: unit, true RUL, and the prediction after `n` rounds for each `read_rounds`."""
    from lightgbm import LGBMRegressor

    cache = RESULTS / f"cv_rul_{subset}_{label}_{rounds}.npz"
    if cache.exists():
        return dict(np.load(cache))
    cap, extra = FITS[label]
    units = cmapss.load_train(subset)
    order = np.random.default_rng(SEED).permutation(sorted(units))
    out_unit, out_truth, out_pred = [], [], {n: [] for n in read_rounds}
    for k in range(FOLDS):
        held = sorted(int(u) for u in order[k::FOLDS])
        train = {u: t for u, t in units.items() if u not in held}
        statistics = extra.get("statistics", FEATURE_STATISTICS)
        spec = fit_spec(
            train,
            TURBOFAN,
            statistics=statistics,
            health_index=extra.get("spec_hi", False),
            early_readings=extra.get("spec_early", HEALTH_EARLY_READINGS),
        )
        ts = build_padded_set(train, TURBOFAN, spec, cap)
        aug = Augment.fit(train, spec, extra, cap)
        X_train = np.hstack([ts.X, np.vstack([aug(units[u]) for u in sorted(train)])])
        X_train = X_train.astype(np.float32).astype(np.float64)
        lgbm = {k: v for k, v in extra.items() if k not in ("monotone_age", "statistics", *_AUGMENT)}
        params = {**LGBM_PARAMS, **lgbm, "n_estimators": rounds}
        if extra.get("monotone_age"):
            params["monotone_constraints"] = [-1 if name == AGE_FEATURE else 0 for name in ts.feature_names]
        models = []
        for i in range(N_SEEDS):
            seed = int(LGBM_PARAMS["random_state"]) + i
            model = LGBMRegressor(**{**params, "random_state": seed})
            model.fit(X_train, ts.y)
            models.append(model)
        for unit in held:
            traj = units[unit]
            X = np.hstack([unit_features(traj, TURBOFAN, spec), aug(traj)]).astype(np.float32)
            if unit == held[0] and k == 0:  # the causality this scoring relies on, checked once
                cut = {0: traj[: min(len(traj), 77)]}
                _, last = last_features(cut, TURBOFAN, spec)
                assert np.allclose(last[0].astype(np.float32), X[len(cut[0]) - 1, : last.shape[1]])
            n = len(traj)
            out_unit.append(np.full(n, unit))
            out_truth.append(np.arange(n - 1, -1, -1, dtype=np.float64))
            for r in read_rounds:
                out_pred[r].append(np.mean([m.predict(X, num_iteration=r) for m in models], axis=0))
        print(f"    {subset} {label} fold {k + 1}/{FOLDS} done", flush=True)
    result = {"unit": np.concatenate(out_unit), "truth": np.concatenate(out_truth)}
    for r in read_rounds:
        result[f"pred_{r}"] = np.concatenate(out_pred[r])
    RESULTS.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **result)
    return result


class Augment:
    """Features beyond the pipeline's, screened by CV: per sensor, the window's recent mean and mean
    minus the mean of the life's first `baseline` normalised readings (fewer before that many); a
    linear health index (ridge of the capped RUL on the normalised sensors, fitted on the fold's
    training machines) with its window statistics, a life-long ewm and its own early-life delta."""

    def __init__(self, spec: Any, stats: tuple[str, ...], extra: dict[str, Any], coef: Any) -> None:
        self.spec, self.stats, self.coef = spec, stats, coef
        self.baseline = int(extra.get("baseline", 0))
        self.hi_ewm = bool(extra.get("hi_ewm", True))
        self.hi_baseline = int(extra.get("hi_baseline", self.baseline))

    @classmethod
    def fit(cls, train: dict[int, np.ndarray], spec: Any, extra: dict[str, Any], cap: float) -> Augment:
        coef = None
        if extra.get("health"):
            z = np.vstack([_normalised(train[u], spec) for u in sorted(train)])
            y = np.concatenate([np.minimum(np.arange(len(train[u]) - 1, -1, -1), cap) for u in sorted(train)])
            a = np.column_stack([np.ones(len(z)), z])
            coef = np.linalg.solve(a.T @ a + 1.0 * np.eye(a.shape[1]), a.T @ y)
        stats = extra.get("statistics", FEATURE_STATISTICS)
        return cls(spec, stats, extra, coef)

    def __call__(self, traj: np.ndarray) -> np.ndarray:
        z = _normalised(traj, self.spec)
        n, s = z.shape
        cols: list[np.ndarray] = []
        if self.baseline:
            base = _early_mean(z, self.baseline)
            x = unit_features(traj, TURBOFAN, self.spec)
            k = len(self.stats)
            for stat in ("recent_mean", "mean"):
                j = self.stats.index(stat)
                cols.append(x[:, [i * k + j for i in range(s)]] - base)
        if self.coef is not None:
            h = self.coef[0] + z @ self.coef[1:]
            w = TURBOFAN.window
            padded = np.concatenate([np.full(w - 1, h[0]), h])
            win = sliding_window_view(padded, w)[:, :, None]
            names = ("last", "mean", "std", "slope", "recent_mean", "ewm", "recent_slope", "trend")
            hstats = _window_features(win, np.zeros(n), names)[:, :-1]
            cols.append(hstats)
            if self.hi_ewm:
                ewm = np.empty(n)
                acc = h[0]
                for t in range(n):
                    acc = acc + 0.05 * (h[t] - acc)
                    ewm[t] = acc
                cols.append(ewm[:, None])
            if self.hi_baseline:
                cols.append(hstats[:, 4:5] - _early_mean(h[:, None], self.hi_baseline))
        return np.hstack(cols) if cols else np.empty((n, 0))


def _normalised(traj: np.ndarray, spec: Any) -> np.ndarray:
    rows = reading_rows(traj, TURBOFAN)
    s = len(TURBOFAN.informative_sensors)
    return spec.conditions.normalise(rows[:, :s], rows[:, s:])


def _early_mean(z: np.ndarray, n_first: int) -> np.ndarray:
    """At each reading: the mean of the first min(t + 1, n_first) readings."""
    counts = np.minimum(np.arange(1, len(z) + 1), n_first)[:, None]
    csum = np.cumsum(z, axis=0)
    return csum[np.minimum(np.arange(len(z)), n_first - 1)] / counts


def unit_weighted_rmse(unit: np.ndarray, truth: np.ndarray, pred: np.ndarray) -> float:
    """RMSE against the truth capped at 125, each held-out run weighing the same."""
    err2 = (pred - np.minimum(truth, DEFAULT_RUL_CAP)) ** 2
    _, inverse, counts = np.unique(unit, return_inverse=True, return_counts=True)
    return math.sqrt(float(np.sum(err2 / counts[inverse]) / len(counts)))


def per_unit(unit: np.ndarray, pred: np.ndarray, smooth: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    out = np.empty_like(pred)
    for u in np.unique(unit):
        idx = np.flatnonzero(unit == u)  # a unit's cycles are contiguous and in order
        out[idx] = smooth(pred[idx])
    return out


def shifted_mean(pred: np.ndarray, k: int, shift: float = 1.0, plateau: float | None = None) -> np.ndarray:
    """For each reading t: the mean of the unit's last `k` predictions (fewer at its start), each moved
    on by `shift` times the readings since it was made (p[t - j] - shift * j; shift 0: a plain moving
    average). With `plateau`, a prediction at or above it is not moved: a healthy machine's capped RUL
    does not fall with its age. A pure function of the unit's own predictions, as an actor could apply
    it online from its prediction history."""
    p = np.asarray(pred, dtype=np.float64)
    n = p.shape[0]
    total = np.zeros(n)
    count = np.zeros(n)
    for j in range(min(k, n)):
        past = p[: n - j]
        moved = np.full(n - j, shift * j) if plateau is None else np.where(past < plateau, shift * j, 0.0)
        total[j:] += past - moved
        count[j:] += 1.0
    return total / count


def smoothers() -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    out: dict[str, Callable[[np.ndarray], np.ndarray]] = {"raw": lambda p: p}
    # a model fitted to a higher cap, its prediction clipped to the scored one (not a smoothing)
    out["clip 125"] = lambda p: np.minimum(p, DEFAULT_RUL_CAP)
    for k in (3, 5, 10, 20):
        out[f"shift-mean {k}"] = lambda p, k=k: shifted_mean(p, k)
    for k in (3, 10):
        out[f"mean {k}"] = lambda p, k=k: shifted_mean(p, k, shift=0.0)
        out[f"half-shift-mean {k}"] = lambda p, k=k: shifted_mean(p, k, shift=0.5)
    for k in (10, 20):
        out[f"shift-mean {k}, below 115"] = lambda p, k=k: shifted_mean(p, k, plateau=115.0)
        out[f"shift-mean {k}, below 105"] = lambda p, k=k: shifted_mean(p, k, plateau=105.0)
    return out


def fold_of(subset: str, unit: np.ndarray) -> np.ndarray:
    """The fold each held-out cycle's unit was held out in."""
    order = np.random.default_rng(SEED).permutation(sorted(cmapss.load_train(subset)))
    fold = np.zeros(len(unit), dtype=np.int64)
    for k in range(FOLDS):
        fold[np.isin(unit, order[k::FOLDS])] = k
    return fold


def per_fold(subset: str, res: dict[str, Any], rounds: int) -> str:
    fold = fold_of(subset, res["unit"])
    scores = [
        unit_weighted_rmse(res["unit"][fold == k], res["truth"][fold == k], res[f"pred_{rounds}"][fold == k])
        for k in range(FOLDS)
    ]
    return " / ".join(f"{s:.2f}" for s in scores)


def calibrated(subset: str, res: dict[str, Any], pred: np.ndarray) -> dict[str, float]:
    """Capped RMSE after mapping the prediction through a function of it fitted on the other folds'
    held-out predictions (cross-fitted: never on the fold it is scored on): isotonic, or linear."""
    from sklearn.isotonic import IsotonicRegression

    unit, truth = res["unit"], np.minimum(res["truth"], DEFAULT_RUL_CAP)
    fold = fold_of(subset, unit)
    _, inverse, counts = np.unique(unit, return_inverse=True, return_counts=True)
    weight = 1.0 / counts[inverse]  # each run weighs the same, as in the scoring
    out: dict[str, float] = {}
    for name in ("isotonic", "linear"):
        mapped = np.empty_like(pred)
        for k in range(FOLDS):
            fit, held = fold != k, fold == k
            if name == "isotonic":
                iso = IsotonicRegression(out_of_bounds="clip").fit(
                    pred[fit], truth[fit], sample_weight=weight[fit]
                )
                mapped[held] = iso.predict(pred[held])
            else:
                a = np.column_stack([np.ones(fit.sum()), pred[fit]]) * np.sqrt(weight[fit])[:, None]
                coef = np.linalg.lstsq(a, truth[fit] * np.sqrt(weight[fit]), rcond=None)[0]
                mapped[held] = coef[0] + coef[1] * pred[held]
        out[name] = unit_weighted_rmse(unit, res["truth"], mapped)
    return out


def diagnostics(res: dict[str, Any], pred: np.ndarray) -> str:
    """Why smoothing can or cannot pay: how alike a unit's consecutive errors are (lag-1
    correlation), and the mean error by band of the true RUL."""
    unit, truth = res["unit"], res["truth"]
    err = pred - np.minimum(truth, DEFAULT_RUL_CAP)
    same = unit[1:] == unit[:-1]
    corr = float(np.corrcoef(err[1:][same], err[:-1][same])[0, 1])
    bands = [(0, 25), (25, 50), (50, 75), (75, 100), (100, 125), (125, 10_000)]
    bias = ", ".join(
        f"{lo}-{hi if hi < 10_000 else ''}: {float(np.mean(err[(truth >= lo) & (truth < hi)])):+.1f}"
        for lo, hi in bands
    )
    return f"error lag-1 correlation {corr:.3f}; mean error by true RUL {bias}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subsets", nargs="+", default=["FD001", "FD002"])
    parser.add_argument("--fits", nargs="+", default=["base"], choices=list(FITS))
    parser.add_argument("--rounds", type=int, default=800)
    parser.add_argument("--read-rounds", type=int, nargs="+", default=[300, 500, 800])
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    smooth = smoothers()
    print("| data | fit | rounds | " + " | ".join(smooth) + " |")
    print("|---|---|---:|" + "---:|" * len(smooth))
    for subset in args.subsets:
        for label in args.fits:
            started = time.perf_counter()
            res = fold_predictions(subset, label, args.rounds, args.read_rounds)
            for r in args.read_rounds:
                pred = res[f"pred_{r}"]
                scores = [
                    unit_weighted_rmse(res["unit"], res["truth"], per_unit(res["unit"], pred, f))
                    for f in smooth.values()
                ]
                print(
                    f"| {subset} | {label} | {r} | " + " | ".join(f"{s:.3f}" for s in scores) + " |",
                    flush=True,
                )
            folds = per_fold(subset, res, args.read_rounds[0])
            print(f"    per fold (raw, {args.read_rounds[0]} rounds): {folds}")
            cal = calibrated(subset, res, res[f"pred_{args.read_rounds[0]}"])
            print(
                f"    calibrated, {args.read_rounds[0]} rounds: "
                + ", ".join(f"{k} {v:.3f}" for k, v in cal.items())
            )
            print(f"    {diagnostics(res, res[f'pred_{args.read_rounds[0]}'])}")
            print(f"    ({time.perf_counter() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
