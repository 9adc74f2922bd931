"""Loader for the bundled AI4I 2020 milling data (data/ai4i2020/ai4i2020.csv; its README explains it).

Used by training (source `dataset` of a `failure` model) and by tests that replay the mill's readings.
The file is one machine: row `UDI` is the reading's seq, `Type` (L/M/H) becomes the `product_quality`
channel (0/1/2), `Machine failure` is the label and the five type columns only say which failure it
was (they are the label, never features).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

DEFAULT_FILE: Final = Path(__file__).resolve().parents[2] / "data" / "ai4i2020" / "ai4i2020.csv"
# The file's columns of each milling channel.
CHANNELS: Final = {
    "air_temperature": "Air temperature [K]",
    "process_temperature": "Process temperature [K]",
    "rotational_speed": "Rotational speed [rpm]",
    "torque": "Torque [Nm]",
    "tool_wear": "Tool wear [min]",
}
QUALITY: Final = {"L": 0.0, "M": 1.0, "H": 2.0}
QUALITY_CHANNEL: Final = "product_quality"
FAILURE_TYPES: Final = ("TWF", "HDF", "PWF", "OSF", "RNF")


@dataclass(frozen=True, slots=True)
class Ai4iData:
    seq: np.ndarray  # [n] int64, UDI
    values: dict[str, np.ndarray]  # channel -> [n] float64 (CHANNELS and product_quality)
    failed: np.ndarray  # [n] bool, `Machine failure`
    types: list[tuple[str, ...]]  # the failure types set on each row (may be empty, even on a failure)

    def rows(self, columns: tuple[str, ...]) -> np.ndarray:
        """[n, len(columns)] of the named channels (e.g. apps.common.features.reading_columns)."""
        return np.column_stack([self.values[c] for c in columns])

    def type_counts(self) -> dict[str, int]:
        """How many failures of each type (a failure may have several, or none given)."""
        counts = dict.fromkeys(FAILURE_TYPES, 0)
        for row, kinds in zip(self.failed, self.types, strict=True):
            for kind in kinds if row else ():
                counts[kind] += 1
        return counts


def load(path: Path = DEFAULT_FILE) -> Ai4iData:
    """The whole file; ValueError naming the file and line for a row that cannot be read."""
    if not path.is_file():
        raise FileNotFoundError(f"AI4I 2020 file not found: {path}")
    with path.open(encoding="utf-8-sig", newline="") as fh:  # the file starts with a byte-order mark
        reader = csv.DictReader(fh)
        needed = ["UDI", "Type", "Machine failure", *CHANNELS.values(), *FAILURE_TYPES]
        missing = [c for c in needed if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: not the AI4I 2020 file, missing column(s) {', '.join(missing)}")
        seqs: list[int] = []
        rows: list[list[float]] = []
        failed: list[bool] = []
        types: list[tuple[str, ...]] = []
        for line, row in enumerate(reader, start=2):
            try:
                seqs.append(int(row["UDI"]))
                rows.append([QUALITY[row["Type"]], *(float(row[c]) for c in CHANNELS.values())])
                failed.append(int(row["Machine failure"]) == 1)
            except (KeyError, ValueError, TypeError) as exc:
                raise ValueError(f"{path} line {line}: unreadable row ({exc})") from None
            types.append(tuple(t for t in FAILURE_TYPES if row[t].strip() == "1"))
    matrix = np.array(rows, dtype=np.float64)
    names = [QUALITY_CHANNEL, *CHANNELS]
    return Ai4iData(
        np.array(seqs, dtype=np.int64),
        {name: matrix[:, j] for j, name in enumerate(names)},
        np.array(failed, dtype=bool),
        types,
    )
