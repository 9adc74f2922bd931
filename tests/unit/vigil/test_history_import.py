"""`vigil import` without a sidecar: C-MAPSS and CSV files become blocks and events, and a bad file
is refused whole with its line and column."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from apps.common import cmapss
from apps.common.profiles import PROFILES, TURBOFAN
from vigil.history import HistoryFileError, ai4i_history, cmapss_history, csv_history

NOW = datetime(2024, 6, 1, tzinfo=UTC)
DATA = cmapss.data_dir()


def lines_of(name: str, n: int) -> list[str]:
    with gzip.open(DATA / f"{name}.txt.gz", "rt") as fh:
        return [next(fh) for _ in range(n)]


def test_training_units_run_to_failure_with_replays_ids_and_hourly_times() -> None:
    history = cmapss_history(DATA / "train_FD002.txt.gz", TURBOFAN, NOW)
    train = cmapss.load_train("FD002")
    assert [b.equipment_id for b in history.blocks[:2]] == ["fd002-001", "fd002-002"]
    assert history.readings == sum(t.shape[0] for t in train.values()) == 53759
    first = history.blocks[0]
    np.testing.assert_array_equal(first.seq, train[1][:, 1])
    np.testing.assert_array_equal(first.values["sensor_7"], train[1][:, cmapss.COLUMNS.index("sensor_7")])
    assert first.timestamp[1] - first.timestamp[0] == np.timedelta64(3600, "s")
    assert {(e.kind, e.source) for e in history.events} == {("failure", "import")}
    assert history.events[0].seq == int(train[1][-1, 1]) and len(history.events) == 260


def test_test_units_fail_only_with_their_true_rul(tmp_path: Path) -> None:
    plain = cmapss_history(DATA / "test_FD001.txt.gz", TURBOFAN, NOW)
    assert plain.events == [] and plain.blocks[0].equipment_id == "fd001-test-001"
    labelled = cmapss_history(DATA / "test_FD001.txt.gz", TURBOFAN, NOW, rul_path=DATA / "RUL_FD001.txt.gz")
    rul, test = cmapss.load_rul(), cmapss.load_test()
    assert [e.seq for e in labelled.events[:3]] == [int(test[u][-1, 1] + rul[u]) for u in (1, 2, 3)]
    short = tmp_path / "RUL_short.txt"
    short.write_text("10\n20\n")
    with pytest.raises(HistoryFileError, match="2 RUL values for the 100 units"):
        cmapss_history(DATA / "test_FD001.txt.gz", TURBOFAN, NOW, rul_path=short)
    with pytest.raises(HistoryFileError, match="a RUL file is for test units"):
        cmapss_history(DATA / "train_FD001.txt.gz", TURBOFAN, NOW, rul_path=short)


def replace_on(line: int, old: str, new: str):  # noqa: ANN201 - an edit of the file's lines
    return lambda ls: ls[: line - 1] + [ls[line - 1].replace(old, new, 1)] + ls[line:]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (replace_on(3, " ", " x "), "line 3: expected 26 numbers, got 27"),
        (replace_on(2, "642.15", "64l.15"), "line 2, column sensor_2: '64l.15' is not a number"),
        (lambda ls: ls[:1] + ls[2:], "line 2: unit 1 jumps to cycle 3, expected 2"),
        (
            replace_on(2, "642.15", "9642.15"),
            "unit 1 cycle 2: sensor_2 = 9642.15 is outside the plausible range [480, 700]",
        ),
        (lambda ls: [], "no data lines"),
    ],
)
def test_a_bad_cmapss_file_names_its_line_and_column(tmp_path: Path, edit, message: str) -> None:  # noqa: ANN001
    path = tmp_path / "train_FD009.txt"
    path.write_text("".join(edit(lines_of("train_FD001", 4))))
    with pytest.raises(HistoryFileError) as exc:
        cmapss_history(path, TURBOFAN, NOW)
    assert str(path) in str(exc.value) and message in str(exc.value)


def test_file_names_and_prefixes_are_checked(tmp_path: Path) -> None:
    with pytest.raises(HistoryFileError, match="no such file"):
        cmapss_history(tmp_path / "train_FD001.txt", TURBOFAN, NOW)
    odd = tmp_path / "engines.txt"
    odd.write_text("".join(lines_of("train_FD001", 3)))
    with pytest.raises(HistoryFileError, match="not named like a C-MAPSS file"):
        cmapss_history(odd, TURBOFAN, NOW)
    ok = tmp_path / "train_FD001.txt"
    ok.write_text("".join(lines_of("train_FD001", 3)))
    with pytest.raises(HistoryFileError, match="--prefix 'no spaces '"):
        cmapss_history(ok, TURBOFAN, NOW, prefix="no spaces ")
    assert cmapss_history(ok, TURBOFAN, NOW, prefix="eng-").blocks[0].equipment_id == "eng-001"
    binary = tmp_path / "train_FD002.txt.gz"
    binary.write_bytes(b"not gzip at all")
    with pytest.raises(HistoryFileError, match="not a text file"):
        cmapss_history(binary, TURBOFAN, NOW)


MILLING_CSV = """equipment_id,seq,timestamp,event,product_quality,air_temperature,process_temperature,\
rotational_speed,torque,tool_wear
mill-1,0,2024-01-01T00:00:00Z,,0,298.1,308.6,1551,42.8,0
mill-1,1,2024-01-01T00:01:00Z,,1,298.2,308.7,1408,46.3,3
mill-2,5,,maintenance,2,298.1,308.5,1498,49.4,5
mill-1,2,2024-01-01T00:02:00+01:00,failure,0,298.2,308.6,1433,39.5,7
"""


def test_a_csv_in_vigils_layout_gives_readings_and_events(tmp_path: Path) -> None:
    path = tmp_path / "mill.csv"
    path.write_text(MILLING_CSV)
    history = csv_history(path, PROFILES["milling"], NOW, start=datetime(2024, 2, 1, tzinfo=UTC))
    by_id = {b.equipment_id: b for b in history.blocks}
    assert by_id["mill-1"].seq.tolist() == [0, 1, 2] and by_id["mill-1"].values["torque"].tolist() == [
        42.8,
        46.3,
        39.5,
    ]
    assert by_id["mill-1"].timestamp[2] == np.datetime64("2023-12-31T23:02:00", "us")  # +01:00 -> UTC
    assert by_id["mill-2"].timestamp[0] == np.datetime64(datetime(2024, 2, 1) + 5 * timedelta(hours=1), "us")
    assert [(e.equipment_id, e.kind, e.seq) for e in history.events] == [
        ("mill-2", "maintenance", 5),
        ("mill-1", "failure", 2),
    ]


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("equipment_id,seq,", "machine,seq,", "header: missing column(s) equipment_id"),
        (",tool_wear\n", ",tool_wear,spindle_temp\n", "column(s) spindle_temp are not channels of profile"),
        (",torque,tool_wear\n", ",tool_wear\n", "header: profile 'milling' needs column(s) torque"),
        (",1551,", ",-5,", "line 2, column rotational_speed: rotational_speed = -5 is outside"),
        (",1408,", ",fast,", "line 3, column rotational_speed: 'fast' is not a number"),
        ("mill-1,1,", "mill-1,0,", "line 3: mill-1 seq 0 is already on line 2"),
        ("mill-1,1,", "mill 1,1,", "line 3, column equipment_id: 'mill 1' is not a valid equipment id"),
        ("mill-1,1,", "mill-1,-1,", "line 3, column seq: '-1' is not a whole number"),
        ("00:01:00Z", "00:01:00", "line 3, column timestamp: '2024-01-01T00:01:00' has no time zone"),
        (",maintenance,", ",repaired,", "line 4, column event: 'repaired' is not one of failure"),
        (",42.8,0\n", ",42.8\n", "line 2: 9 fields, the header has 10"),
        (",42.8,0\n", ",42.8,\n", "line 2, column tool_wear: empty, and profile 'milling' needs it"),
    ],
)
def test_a_bad_csv_names_its_line_and_column(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in MILLING_CSV
    path = tmp_path / "mill.csv"
    path.write_text(MILLING_CSV.replace(old, new, 1))
    with pytest.raises(HistoryFileError) as exc:
        csv_history(path, PROFILES["milling"], NOW)
    assert message in str(exc.value)


def test_ai4i_is_one_milling_machine_with_its_failures() -> None:
    path = Path(__file__).resolve().parents[3] / "data" / "ai4i2020" / "ai4i2020.csv"
    history = ai4i_history(path, PROFILES["milling"], NOW)
    [mill] = history.blocks
    assert mill.equipment_id == "ai4i-mill" and mill.profile == "milling"
    assert mill.seq.tolist() == list(range(1, 10001))
    assert mill.values["product_quality"][:3].tolist() == [1.0, 0.0, 0.0]  # M, L, L
    assert mill.values["torque"][0] == 42.8 and mill.values["tool_wear"][2] == 5.0
    assert len(history.events) == 339 and {e.kind for e in history.events} == {"failure"}
    first = history.events[0]
    assert first.note.startswith("failure modes: ") and first.seq == 51  # UDI 51: a power failure
    assert "PWF" in first.note


def test_a_file_that_is_not_ai4i_says_what_it_misses(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text(MILLING_CSV)
    with pytest.raises(HistoryFileError, match="not the AI4I 2020 file, missing column"):
        ai4i_history(path, PROFILES["milling"], NOW)
