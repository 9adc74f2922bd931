"""The feature pipeline: one definition, used online by the EquipmentActor and offline by training.

Both entry points, `offline_features` (a whole trajectory, every window at once) and `online_features`
(the actor's current window), call the same core `_window_features`, so the features a model was
trained on and the features it is served are identical by construction: no training/serving skew.

Arrays are float64 with columns = `profile.informative_sensors` in profile order. For each informative
sensor, over the last W readings, the statistics of the model's `FeatureSpec.statistics` in that order:
by default (and for a card that names none) last, mean, std (population), min, max and the
least-squares slope against the reading index; a spec may add the recent ones (`EXTRA_STATISTICS`:
mean of the last 10 readings, exponentially weighted mean, slope over the last 20, last 10 minus first
10 readings' mean); then one final feature, `age_cycles` (how many cycles the machine has run at the
window's last reading).

Three optional steps come before the window statistics, all row by row so that a reading is
transformed the same way whether it arrives alone (online) or inside a whole trajectory (offline):
`OperatingConditions` standardises each reading's sensors by the statistics of its operating
condition (a cluster of the operating settings, fitted on training data and shipped with the model),
`HealthIndex` appends one more column, a linear combination of the (standardised) sensors fitted on
training data and shipped likewise, whose window statistics follow the sensors' (`health_index__*`),
and `pad_start` repeats a machine's first reading so that machines younger than the window still get
a prediction.
"""

from __future__ import annotations

import base64
import functools
from typing import Any, Final

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import BaseModel, ConfigDict, Field, field_validator

from apps.common.profiles import EquipmentProfile

STATISTICS: Final[tuple[str, ...]] = ("last", "mean", "std", "min", "max", "slope")
# What a spec may add (grouped CV on FD001/FD002 training machines chose them, apps/training/quality.py):
# the window's latest part, less noisy than `last` and fresher than `mean`/`slope` over the whole window.
EXTRA_STATISTICS: Final[tuple[str, ...]] = ("recent_mean", "ewm", "recent_slope", "trend")
RECENT_READINGS: Final = 10  # recent_mean; trend = their mean minus the window's first 10 readings'
RECENT_SLOPE_READINGS: Final = 20  # recent_slope
EWM_ALPHA: Final = 0.1  # ewm: weights (1 - alpha)^age in readings over the window, normalised
AGE_FEATURE: Final = "age_cycles"
HEALTH_INDEX: Final = "health_index"  # the name of the column a spec's `HealthIndex` appends
# The health index's recent mean minus its mean over the life's first readings (`HealthIndex.early_readings`,
# fewer while the life is younger): what the machine lost since it started, without the offset each
# machine starts with. The actor keeps at most `EARLY_READINGS` first readings of the life for it.
FROM_START: Final = "from_start"
EARLY_READINGS: Final = 20


def _columns(profile: EquipmentProfile, spec: FeatureSpec | None) -> list[str]:
    """The columns the window statistics are taken of: the informative sensors, then the health index."""
    extra = [HEALTH_INDEX] if spec is not None and spec.health_index is not None else []
    return [*profile.informative_sensors, *extra]


def _from_start(spec: FeatureSpec | None) -> list[str]:
    early = spec is not None and spec.health_index is not None and spec.health_index.early_readings
    return [f"{HEALTH_INDEX}__{FROM_START}"] if early else []


def feature_names(profile: EquipmentProfile, spec: FeatureSpec | None = None) -> list[str]:
    """Stable, named feature order: sensor-major (`sensor_2__last`, `sensor_2__mean`, ...) with the
    spec's statistics (the default six without one), the spec's health index like one more sensor
    (and its `from_start`, if the spec has one), age last."""
    stats = STATISTICS if spec is None else spec.statistics
    names = [f"{col}__{stat}" for col in _columns(profile, spec) for stat in stats]
    return [*names, *_from_start(spec), AGE_FEATURE]


def n_features(profile: EquipmentProfile, spec: FeatureSpec | None = None) -> int:
    stats = STATISTICS if spec is None else spec.statistics
    return len(_columns(profile, spec)) * len(stats) + len(_from_start(spec)) + 1


# Settings closer than this (as a fraction of each setting's plausible span in the profile) belong to
# one operating condition: C-MAPSS's six flight conditions are tens of percent apart, while the noise
# around one condition is under 0.1%.
CONDITION_RADIUS: Final = 0.05
# A sensor constant within a condition (C-MAPSS has several) has no spread to divide by: centred only.
_MIN_STD: Final = 1e-9


class OperatingConditions(BaseModel):
    """Per-condition standardisation of the sensors: part of a model artefact (its card), not the profile.

    `centres` are the conditions in settings units, `spans` the distance scale per setting; `means` and
    `stds` are per condition and informative sensor, learnt on the training set.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    centres: list[list[float]]
    spans: list[float]
    means: list[list[float]]
    stds: list[list[float]]

    @classmethod
    def fit(
        cls, settings: np.ndarray, sensors: np.ndarray, spans: np.ndarray, radius: float = CONDITION_RADIUS
    ) -> OperatingConditions:
        """Leader clustering of the settings (deterministic, no k to choose), then per-cluster stats."""
        z = np.asarray(settings, dtype=np.float64) / np.asarray(spans, dtype=np.float64)
        remaining = np.arange(z.shape[0])
        centres: list[np.ndarray] = []
        while remaining.size:
            near = np.linalg.norm(z[remaining] - z[remaining[0]], axis=1) <= radius
            centres.append(z[remaining[near]].mean(axis=0))
            remaining = remaining[~near]
        draft = cls(
            centres=(np.array(centres) * spans).tolist(),
            spans=np.asarray(spans, dtype=np.float64).tolist(),
            means=[[0.0]],
            stds=[[1.0]],
        )
        labels = draft.assign(settings)
        x = np.asarray(sensors, dtype=np.float64)
        means = np.array([x[labels == k].mean(axis=0) for k in range(len(centres))])
        stds = np.array([x[labels == k].std(axis=0) for k in range(len(centres))])
        stds = np.where(stds > _MIN_STD, stds, 1.0)
        return draft.model_copy(update={"means": means.tolist(), "stds": stds.tolist()})

    def assign(self, settings: np.ndarray) -> np.ndarray:
        """Index of the nearest condition of every row of settings, shape [n, n_settings] -> [n]."""
        spans = np.asarray(self.spans, dtype=np.float64)
        z = np.asarray(settings, dtype=np.float64) / spans
        centres = np.asarray(self.centres, dtype=np.float64) / spans
        return np.argmin(((z[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2), axis=1)

    def normalise(self, sensors: np.ndarray, settings: np.ndarray) -> np.ndarray:
        """Each row's sensors standardised by its condition's training mean and std."""
        k = self.assign(settings)
        means = np.asarray(self.means, dtype=np.float64)
        stds = np.asarray(self.stds, dtype=np.float64)
        return (np.asarray(sensors, dtype=np.float64) - means[k]) / stds[k]


class HealthIndex(BaseModel):
    """A linear health index: `intercept + weights . sensors` of each reading (after the conditions'
    standardisation, if any), one weight per informative sensor; part of a model card like the
    conditions. A ridge fit of the capped RUL on training readings (apps/training/quality.py): it
    averages the noise of all sensors into one column, whose window statistics a tree model then
    splits on (bench/cv_rul.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    weights: list[float]
    intercept: float
    # > 0: the `from_start` feature over this many first readings of the life (a card from before: 0)
    early_readings: int = Field(default=0, ge=0, le=EARLY_READINGS)

    @classmethod
    def fit(cls, sensors: np.ndarray, target: np.ndarray, ridge: float = 1.0) -> HealthIndex:
        """Ridge regression of `target` on the rows of `sensors` (intercept unpenalised)."""
        x = np.asarray(sensors, dtype=np.float64)
        y = np.asarray(target, dtype=np.float64)
        mean_x, mean_y = x.mean(axis=0), float(y.mean())
        xc = x - mean_x
        weights = np.linalg.solve(xc.T @ xc + ridge * np.eye(x.shape[1]), xc.T @ (y - mean_y))
        return cls(weights=weights.tolist(), intercept=mean_y - float(mean_x @ weights))

    def early_means(self, head: np.ndarray) -> np.ndarray:
        """From the index of the life's first readings (oldest first): element k - 1 is the mean of
        the first k (a running sum, so a shorter head gives the same first elements)."""
        h = np.asarray(head, dtype=np.float64)[: self.early_readings]
        return np.cumsum(h) / np.arange(1, len(h) + 1, dtype=np.float64)

    def append_to(self, sensors: np.ndarray) -> np.ndarray:
        """Rows [n, S] -> [n, S + 1]: the sensors, then each row's health index."""
        x = np.asarray(sensors, dtype=np.float64)
        # an elementwise product summed per row: each row's value does not depend on how many rows
        # come with it (a BLAS product may block differently), so online equals offline bit for bit
        index = np.sum(x * np.asarray(self.weights, dtype=np.float64), axis=1) + self.intercept
        return np.column_stack([x, index])


class FeatureSpec(BaseModel):
    """How a model's features are computed from reading rows: recorded in its model card.

    The actor reads it from the card of the model inference serves, so a model trained with
    per-condition normalisation is fed features normalised by its own `conditions`, and a hot swap to
    a model with other conditions changes what the actor computes with it. `window` must be the
    profile's (the actor keeps that many readings).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    window: int = Field(ge=2)
    conditions: OperatingConditions | None = None
    # The window statistics of every sensor, in feature order (a card from before this field: the six).
    statistics: tuple[str, ...] = STATISTICS
    # A card from before this field has none: its features are the sensors' only.
    health_index: HealthIndex | None = None

    @field_validator("statistics")
    @classmethod
    def _known_statistics(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [s for s in value if s not in (*STATISTICS, *EXTRA_STATISTICS)]
        if unknown or not value or len(set(value)) != len(value):
            raise ValueError(
                f"statistics must be distinct names among {(*STATISTICS, *EXTRA_STATISTICS)}, got {value}"
            )
        return value

    def check(self, profile: EquipmentProfile) -> None:
        if self.window != profile.window:
            raise ValueError(
                f"the model's features use a {self.window}-reading window, profile {profile.name!r} "
                f"keeps {profile.window}"
            )
        sensors = len(profile.informative_sensors)
        if (
            self.health_index is not None
            and self.health_index.early_readings
            and "recent_mean" not in self.statistics
        ):
            raise ValueError("the health index's from_start needs the recent_mean statistic")
        if self.health_index is not None and len(self.health_index.weights) != sensors:
            raise ValueError(
                f"the model's health index weighs {len(self.health_index.weights)} sensors, profile "
                f"{profile.name!r} has {sensors} informative ones"
            )


def reading_columns(profile: EquipmentProfile) -> tuple[str, ...]:
    """The columns of a reading row as the actor keeps it: informative sensors, then settings."""
    return (*profile.informative_sensors, *profile.operating_settings)


def reading_features(
    rows: np.ndarray,
    profile: EquipmentProfile,
    spec: FeatureSpec,
    ages: np.ndarray | None = None,
    *,
    pad: bool = True,
    head: np.ndarray | None = None,
) -> np.ndarray:
    """The pipeline on reading rows ([n, len(reading_columns)]): what training, the benchmark, the
    promotion gate and the actor all call.

    With `pad` (a machine's readings from its first one) every reading ends a window, the first ones
    padded with copies of the first reading: [n, F]. Without it (the actor's owed positions, whose
    `window - 1` rows of context are included) only full windows: [n - W + 1, F]. `head`: the life's
    first reading rows, as many as the spec's health index's `early_readings` (fewer while the life is
    younger), which its `from_start` needs; with `pad` they are the first of `rows` by default.
    """
    spec.check(profile)
    x = np.asarray(rows, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != len(reading_columns(profile)):
        raise ValueError(
            f"reading rows must have shape [rows, {len(reading_columns(profile))}] "
            f"(columns = informative sensors, then operating settings), got {x.shape}"
        )
    s = len(profile.informative_sensors)
    hi = spec.health_index
    early = hi is not None and hi.early_readings > 0
    feats = offline_features(
        x[:, :s],
        profile,
        ages,
        settings=x[:, s:],
        conditions=spec.conditions,
        pad=pad,
        statistics=spec.statistics,
        health_index=hi,
    )
    if hi is None or not early or not len(feats):
        return feats
    if head is None:
        if not pad:
            raise ValueError("the health index's from_start needs the life's first readings (head)")
        head = x[: hi.early_readings]  # padded rows are the machine's from its first reading
    first = np.asarray(head, dtype=np.float64)
    index = _rows_transformed(first[:, :s], first[:, s:], spec.conditions, hi)[:, -1]
    means = hi.early_means(index)
    age = feats[:, -1]
    need = min(hi.early_readings, int(np.max(age)))
    if len(means) < need or np.min(age) < 1:
        raise ValueError(
            f"the health index's from_start at age {np.max(age):.0f} needs {need} first readings"
        )
    k = np.minimum(age, len(means)).astype(np.int64) - 1
    recent = s * len(spec.statistics) + spec.statistics.index("recent_mean")
    return np.column_stack([feats[:, :-1], feats[:, recent] - means[k], age])


def pad_start(rows: np.ndarray, window: int) -> np.ndarray:
    """`rows` preceded by copies of its first row up to a full window (unchanged if already full).

    Offline, pad a whole trajectory with `window - 1` copies: its window ending at reading k then holds
    exactly what the actor's window holds after k + 1 readings, padded here to `window`.
    """
    missing = window - rows.shape[0]
    if missing <= 0:
        return rows
    return np.concatenate((np.repeat(rows[:1], missing, axis=0), rows))


def _mean(x: np.ndarray) -> np.ndarray:
    """Mean over the window axis of [n, W, S]: what `x.mean(axis=1)` computes, bit for bit (the same
    add-reduce, then one division by W), without numpy's Python-level wrapper around it (~5 µs a call,
    several calls per window, every reading)."""
    return np.add.reduce(x, axis=1) / x.shape[1]


def _slope(x: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """Least-squares slope against t = 0..W-1 of C-contiguous windows [n, W, S]: sum((t - tbar) *
    (x - xbar)) / sum((t - tbar)^2); `mean`: x's, when already known."""
    t, tt = _slope_weights(x.shape[1])
    centred = x - (_mean(x) if mean is None else mean)[:, None, :]
    return np.einsum("w,nws->ns", t, centred) / tt


@functools.cache
def _slope_weights(w: int) -> tuple[np.ndarray, float]:
    """t - tbar for t = 0..w-1, and its sum of squares: the same for every window of a length."""
    t = np.arange(w, dtype=np.float64) - (w - 1) / 2.0
    t.flags.writeable = False
    return t, float(np.dot(t, t))


@functools.cache
def _ewm_weights(w: int) -> np.ndarray:
    """The ewm statistic's weights over a window of w readings, oldest first, summing to 1."""
    weights = (1.0 - EWM_ALPHA) ** np.arange(w - 1, -1, -1, dtype=np.float64)
    normalised = weights / weights.sum()
    normalised.flags.writeable = False
    return normalised


class _Window:
    """C-contiguous windows [n, W, S] and the means several statistics share, each computed once."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x
        self.w = x.shape[1]
        self.recent = min(RECENT_READINGS, self.w)
        self._means: dict[str, np.ndarray] = {}

    def mean(self, part: str = "all") -> np.ndarray:
        """The mean of the whole window, of its last `recent` readings or of its first `recent`; a part
        is copied to its own contiguous array first, so one window and a stack of them reduce alike."""
        found = self._means.get(part)
        if found is None:
            if part == "all":
                rows = self.x
            elif part == "recent":
                rows = self.x[:, self.w - self.recent :, :]
            else:
                rows = self.x[:, : self.recent, :]
            # A no-op for the whole window, which is contiguous already.
            found = self._means[part] = _mean(np.ascontiguousarray(rows))
        return found


def _statistic(window: _Window, name: str) -> np.ndarray:
    """One statistic of the windows -> [n, S]."""
    x, w = window.x, window.w
    if name == "last":
        return x[:, -1, :]
    if name == "mean":
        return window.mean()
    if name == "std":
        centred = x - window.mean()[:, None, :]
        return np.sqrt(_mean(centred * centred))
    if name == "min":
        return x.min(axis=1)
    if name == "max":
        return x.max(axis=1)
    if name == "slope":
        return _slope(x, window.mean())
    if name == "recent_mean":
        return window.mean("recent")
    if name == "ewm":
        return np.einsum("w,nws->ns", _ewm_weights(w), x)
    if name == "recent_slope":
        return _slope(np.ascontiguousarray(x[:, w - min(RECENT_SLOPE_READINGS, w) :, :]))
    if name == "trend":
        return window.mean("recent") - window.mean("first")
    raise ValueError(f"unknown statistic {name!r}")


def _window_features(
    windows: np.ndarray, ages: np.ndarray, statistics: tuple[str, ...] = STATISTICS
) -> np.ndarray:
    """The core: features of a stack of windows, shape [n, W, S] -> [n, S * len(statistics) + 1].

    Copying to a C-contiguous float64 array first means a single window and a window taken out of
    a strided trajectory view are reduced with the same memory layout, so online and offline
    results agree bit for bit rather than merely to rounding.
    """
    x = np.ascontiguousarray(windows, dtype=np.float64)
    n, _, s = x.shape
    window = _Window(x)
    stats = np.stack([_statistic(window, name) for name in statistics], axis=2)  # [n, S, k]
    out = np.empty((n, s * len(statistics) + 1), dtype=np.float64)
    out[:, :-1] = stats.reshape(n, s * len(statistics))  # sensor-major, matching feature_names
    out[:, -1] = np.asarray(ages, dtype=np.float64)
    return out


def _check_columns(array: np.ndarray, profile: EquipmentProfile, what: str) -> None:
    expected = len(profile.informative_sensors)
    if array.ndim != 2 or array.shape[1] != expected:
        raise ValueError(
            f"{what} must have shape [rows, {expected}] (columns = profile.informative_sensors), "
            f"got {array.shape}"
        )


def _rows_transformed(
    rows: np.ndarray,
    settings: np.ndarray | None,
    conditions: OperatingConditions | None,
    health_index: HealthIndex | None,
) -> np.ndarray:
    """The row-by-row steps before the windows: per-condition standardisation, the health index."""
    if conditions is not None:
        if settings is None:
            raise ValueError("per-condition normalisation needs the operating settings of every reading")
        rows = conditions.normalise(rows, settings)
    return rows if health_index is None else health_index.append_to(rows)


def offline_features(
    trajectory: np.ndarray,
    profile: EquipmentProfile,
    ages: np.ndarray | None = None,
    *,
    settings: np.ndarray | None = None,
    conditions: OperatingConditions | None = None,
    pad: bool = False,
    statistics: tuple[str, ...] = STATISTICS,
    health_index: HealthIndex | None = None,
) -> np.ndarray:
    """Features of every full window of a trajectory, shape [cycles, S] -> [cycles - W + 1, F].

    Row i holds the features of the window ending at reading W-1+i. `ages` gives the age (cycles)
    of every reading; by default reading k is at age k+1, i.e. the trajectory starts at cycle 1 as
    C-MAPSS units do. A trajectory shorter than W yields zero rows. With `conditions` (and the
    operating `settings` of every reading) the sensors are standardised per condition first; with
    `pad` every reading ends a window (shape [cycles, F]), the first ones padded by `pad_start`; with
    `health_index` its column's statistics follow the sensors' (its from_start, which needs the life's
    first readings, is added by `reading_features` only).
    """
    traj = np.asarray(trajectory, dtype=np.float64)
    _check_columns(traj, profile, "trajectory")
    traj = _rows_transformed(traj, settings, conditions, health_index)
    w = profile.window
    if pad and traj.shape[0]:
        if ages is None:
            ages = np.arange(1, traj.shape[0] + 1, dtype=np.float64)
        ages = np.concatenate((np.full(w - 1, np.nan), np.asarray(ages, dtype=np.float64)))
        traj = pad_start(traj, traj.shape[0] + w - 1)
    n_windows = traj.shape[0] - w + 1
    if n_windows <= 0:
        return np.empty((0, traj.shape[1] * len(statistics) + 1), dtype=np.float64)
    if ages is None:
        ages = np.arange(1, traj.shape[0] + 1, dtype=np.float64)
    ages = np.asarray(ages, dtype=np.float64)
    if ages.shape != (traj.shape[0],):
        raise ValueError(f"ages must have one entry per reading ({traj.shape[0]}), got {ages.shape}")
    if n_windows == 1:  # the actor's usual case, one owed window: the rows are it (no view to build)
        return _window_features(traj[None, :, :], ages[w - 1 :], statistics)
    windows = sliding_window_view(traj, w, axis=0)  # [n_windows, S, W], a view, no copy
    return _window_features(windows.transpose(0, 2, 1), ages[w - 1 :], statistics)


def online_features(
    window: np.ndarray,
    age_cycles: float,
    profile: EquipmentProfile,
    *,
    settings: np.ndarray | None = None,
    conditions: OperatingConditions | None = None,
    pad: bool = False,
    statistics: tuple[str, ...] = STATISTICS,
    health_index: HealthIndex | None = None,
) -> np.ndarray:
    """Features of the actor's current window, shape [W, S] -> [F] (fewer rows allowed with `pad`);
    like `offline_features`, without the health index's from_start."""
    win = np.asarray(window, dtype=np.float64)
    _check_columns(win, profile, "window")
    win = _rows_transformed(win, settings, conditions, health_index)
    if pad and win.shape[0]:
        win = pad_start(win, profile.window)
    if win.shape[0] != profile.window:
        raise ValueError(f"window must hold exactly {profile.window} readings, got {win.shape[0]}")
    return _window_features(win[None, :, :], np.array([age_cycles], dtype=np.float64), statistics)[0]


_B64_PREFIX: Final = "f8le:"  # self-describing, and not a date or duration the Dapr serializer rewrites


def encode_array(array: np.ndarray) -> str:
    """Compact JSON-safe text for a float64 array: prefix + base64 of little-endian bytes."""
    data = np.ascontiguousarray(array, dtype="<f8").tobytes()
    return _B64_PREFIX + base64.b64encode(data).decode("ascii")


def decode_array(text: str, shape: tuple[int, ...]) -> np.ndarray:
    if not isinstance(text, str) or not text.startswith(_B64_PREFIX):
        raise ValueError("not an encoded float64 array")
    flat = np.frombuffer(base64.b64decode(text[len(_B64_PREFIX) :]), dtype="<f8")
    return flat.astype(np.float64).reshape(shape)  # astype copies: frombuffer is read-only


class RollingWindow:
    """Fixed-capacity ring buffer of sensor rows, oldest overwritten first.

    The actor keeps one per machine in actor state, so it serialises to a small plain dict
    (base64 of the float64 bytes) rather than a list of lists of floats.
    """

    __slots__ = ("_buf", "_count", "_head")

    def __init__(self, capacity: int, n_columns: int) -> None:
        if capacity < 1 or n_columns < 1:
            raise ValueError("capacity and n_columns must be >= 1")
        self._buf = np.zeros((capacity, n_columns), dtype=np.float64)
        self._head = 0  # index the next row is written to
        self._count = 0

    @property
    def capacity(self) -> int:
        return int(self._buf.shape[0])

    @property
    def n_columns(self) -> int:
        return int(self._buf.shape[1])

    def __len__(self) -> int:
        return self._count

    @property
    def is_full(self) -> bool:
        return self._count == self.capacity

    def append(self, row: np.ndarray | list[float]) -> None:
        r = np.asarray(row, dtype=np.float64)
        if r.shape != (self.n_columns,):
            raise ValueError(f"row must have {self.n_columns} values, got shape {r.shape}")
        self._buf[self._head] = r
        self._head = (self._head + 1) % self.capacity
        self._count = min(self._count + 1, self.capacity)

    def extend(self, rows: np.ndarray) -> None:
        for row in np.asarray(rows, dtype=np.float64).reshape(-1, self.n_columns):
            self.append(row)

    def to_array(self) -> np.ndarray:
        """The rows held, oldest first, as a fresh [len, n_columns] array."""
        if self._count < self.capacity:
            return self._buf[: self._count].copy()
        # Same as np.roll(self._buf, -self._head, axis=0), without np.roll's generic-axis overhead.
        return np.concatenate((self._buf[self._head :], self._buf[: self._head]))

    def to_dict(self) -> dict[str, Any]:
        # Stored oldest-first so the head position need not be persisted.
        return {"capacity": self.capacity, "columns": self.n_columns, "data": encode_array(self.to_array())}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RollingWindow:
        window = cls(int(data["capacity"]), int(data["columns"]))
        rows = decode_array(data["data"], (-1, window.n_columns))
        if rows.shape[0] > window.capacity:
            raise ValueError("serialised window holds more rows than its capacity")
        window.extend(rows)
        return window
