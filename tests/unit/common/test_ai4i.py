"""The AI4I 2020 loader: the shipped file as one mill's readings, labels and failure types."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from apps.common import ai4i
from apps.common.features import reading_columns
from apps.common.profiles import PROFILES


def test_the_shipped_file_is_one_mill_with_its_labels_and_types() -> None:
    data = ai4i.load()
    assert data.seq.tolist() == list(range(1, 10_001))
    assert int(data.failed.sum()) == 339  # `Machine failure`, not the OR of the types (data README)
    assert data.type_counts() == {"TWF": 46, "HDF": 115, "PWF": 95, "OSF": 98, "RNF": 1}
    rows = data.rows(reading_columns(PROFILES["milling"]))
    assert rows.shape == (10_000, 6)
    assert rows[0].tolist() == [298.1, 308.6, 1551.0, 42.8, 0.0, 1.0]  # UDI 1: M quality, last column
    assert set(np.unique(data.values["product_quality"])) == {0.0, 1.0, 2.0}


def test_a_file_that_is_not_ai4i_names_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("UDI,Type\n1,L\n")
    with pytest.raises(ValueError, match=r"other.csv: not the AI4I 2020 file, missing column\(s\) Machine"):
        ai4i.load(path)
    with pytest.raises(FileNotFoundError, match="AI4I 2020 file not found"):
        ai4i.load(tmp_path / "nope.csv")


def test_an_unreadable_row_names_its_line(tmp_path: Path) -> None:
    lines = ai4i.DEFAULT_FILE.read_text(encoding="utf-8-sig").splitlines()
    lines[3] = lines[3].replace(",L,", ",X,", 1).replace(",M,", ",X,", 1)
    path = tmp_path / "broken.csv"
    path.write_text("\n".join(lines[:10]) + "\n")
    with pytest.raises(ValueError, match="broken.csv line 4: unreadable row"):
        ai4i.load(path)
