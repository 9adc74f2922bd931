"""Loader for the bundled NASA C-MAPSS run-to-failure data, FD001 and FD002 (data/cmapss/*.txt.gz).

Used by training (fit and evaluate) and by tests and simulators that replay real engines. Files are
whitespace-separated with trailing spaces, 26 columns: unit, cycle, 3 operating settings, 21 sensors.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import numpy as np

from apps.common.profiles import EquipmentProfile

DATA_DIR_ENV: Final = "VIGIL_DATA_DIR"
SUBSETS: Final = ("FD001", "FD002")  # the sub-datasets data/cmapss/ ships
COLUMNS: Final[tuple[str, ...]] = (
    "unit",
    "cycle",
    "op_setting_1",
    "op_setting_2",
    "op_setting_3",
    *(f"sensor_{i}" for i in range(1, 22)),
)
_COLUMN_INDEX: Final = {name: i for i, name in enumerate(COLUMNS)}


def data_dir() -> Path:
    """`$VIGIL_DATA_DIR` if set, else the repo's data/cmapss (read per call: no import-time config)."""
    override = os.environ.get(DATA_DIR_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "data" / "cmapss"


def _read_matrix(name: str, subset: str) -> np.ndarray:
    path = data_dir() / f"{name}_{subset}.txt.gz"
    if not path.exists():
        plain = path.with_suffix("")  # also accept the uncompressed original
        if not plain.exists():
            raise FileNotFoundError(f"C-MAPSS file not found: {path} (set {DATA_DIR_ENV} to override)")
        path = plain
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="ascii") as fh:
        rows = [line.split() for line in fh if line.strip()]  # split on any whitespace: trailing spaces
    return np.array(rows, dtype=np.float64)


def _by_unit(matrix: np.ndarray) -> dict[int, np.ndarray]:
    if matrix.ndim != 2 or matrix.shape[1] != len(COLUMNS):
        raise ValueError(f"expected {len(COLUMNS)} columns, got shape {matrix.shape}")
    units: dict[int, np.ndarray] = {}
    for unit in np.unique(matrix[:, 0]).astype(int):
        rows = matrix[matrix[:, 0] == unit]
        rows = rows[np.argsort(rows[:, 1], kind="stable")]
        units[int(unit)] = rows
    return units


def load_train(subset: str = "FD001") -> dict[int, np.ndarray]:
    """Run-to-failure trajectories: unit -> [cycles, 26] array (all COLUMNS), sorted by cycle."""
    return _by_unit(_read_matrix("train", subset))


def load_test(subset: str = "FD001") -> dict[int, np.ndarray]:
    """Truncated test trajectories: unit -> [cycles, 26] array, sorted by cycle."""
    return _by_unit(_read_matrix("test", subset))


def load_rul(subset: str = "FD001") -> dict[int, float]:
    """True RUL after the last cycle of each test unit: unit (1-based line number) -> cycles."""
    values = _read_matrix("RUL", subset).reshape(-1)
    return {i + 1: float(v) for i, v in enumerate(values)}


def column(trajectory: np.ndarray, name: str) -> np.ndarray:
    return trajectory[:, _COLUMN_INDEX[name]]


def sensor_matrix(trajectory: np.ndarray, profile: EquipmentProfile) -> np.ndarray:
    """The profile's informative-sensor columns, in profile order: what the feature pipeline takes."""
    return trajectory[:, [_COLUMN_INDEX[s] for s in profile.informative_sensors]].astype(np.float64)


def row_values(row: np.ndarray) -> dict[str, float]:
    """One trajectory row as a reading's `values` dict (settings and sensors, not unit/cycle)."""
    return {name: float(row[i]) for i, name in enumerate(COLUMNS) if i >= 2}


def rul_targets(n_cycles: int, cap: float | None = 125.0) -> np.ndarray:
    """Training targets for a run-to-failure unit: RUL at each cycle, piecewise-linear capped.

    The row at cycle c (1-based) of an n-cycle unit has n - c cycles left (0 at failure). Capping
    (125 is the usual choice for FD001) encodes that a healthy engine's RUL is not observable from
    its sensors, so the model is not asked to tell cycle 300-to-go from cycle 200-to-go.
    """
    rul = np.arange(n_cycles - 1, -1, -1, dtype=np.float64)
    return rul if cap is None else np.minimum(rul, float(cap))


def unit_sensor_matrices(units: Mapping[int, np.ndarray], profile: EquipmentProfile) -> dict[int, np.ndarray]:
    return {unit: sensor_matrix(traj, profile) for unit, traj in units.items()}
