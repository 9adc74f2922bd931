"""Training data from the archive: lives cut at events, RUL labels of runs to failure, and the FD001
history read back from Parquet chunks gives exactly the training set of the FD001 files."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from apps.common import cmapss
from apps.common.archive import blocks_from_readings, decode_chunk, encode_chunk, merge_blocks, split_by_day
from apps.common.contracts import EquipmentEvent
from apps.common.profiles import TURBOFAN
from apps.training.history import fleet_lives, split_lives
from apps.training.quality import build_padded_set, fit_spec, reading_rows
from apps.training.runs import labelled_runs
from tests.unit.common.test_archive import reading
from vigil.history import cmapss_history

NOW = datetime(2024, 6, 1, tzinfo=UTC)
REPO_DATA = cmapss.data_dir()


def event(kind: str, seq: int, eq: str = "m1") -> EquipmentEvent:
    return EquipmentEvent(equipment_id=eq, kind=kind, seq=seq, timestamp=NOW, source="api", recorded_at=NOW)


def test_events_cut_a_machine_into_lives_and_a_failure_labels_its_run() -> None:
    [block] = blocks_from_readings([reading(s) for s in range(1, 13)])
    lives = split_lives(block, [event("maintenance", 9), event("failure", 5), event("replaced", 9)])
    assert [(lf.number, lf.readings.seq.tolist(), lf.ended_by, lf.end_seq) for lf in lives] == [
        (0, [1, 2, 3, 4, 5], "failure", 5),
        (1, [6, 7, 8, 9], "maintenance", 9),  # two events at one seq are one boundary
        (2, [10, 11, 12], None, None),
    ]
    assert lives[0].rul().tolist() == [4.0, 3.0, 2.0, 1.0, 0.0]
    with pytest.raises(ValueError, match="did not end in a failure"):
        lives[1].rul()
    # a failure and a replacement at one seq: the run still ended in a failure
    [only] = split_lives(block, [event("replaced", 12), event("failure", 12)])
    assert only.failed and only.rul()[0] == 11


def test_a_failure_after_the_data_stops_still_labels_the_readings() -> None:
    [block] = blocks_from_readings([reading(s) for s in range(1, 4)])
    [life] = split_lives(block, [event("failure", 50)])
    assert life.rul().tolist() == [49.0, 48.0, 47.0]


def test_lives_without_readings_are_skipped_but_counted() -> None:
    [block] = blocks_from_readings([reading(s) for s in (5, 6)])
    lives = split_lives(block, [event("failure", 2), event("replaced", 3)])
    assert [(lf.number, lf.ended_by) for lf in lives] == [(2, None)]


def test_fd001_imported_and_read_back_trains_on_exactly_the_fd001_training_set() -> None:
    history = cmapss_history(REPO_DATA / "train_FD001.txt.gz", TURBOFAN, NOW)
    assert len(history.blocks) == 100 and len(history.events) == 100
    units = range(1, 21)  # a fifth of them keeps the test quick: each unit is a day chunk per 24 cycles
    blocks = history.blocks[: len(units)]
    # through the archive's bytes: day chunks in Parquet, read back in reverse, some written twice
    chunks = [encode_chunk(day, "test") for b in blocks for day in split_by_day(b)]
    chunks += chunks[:30]
    merged = merge_blocks(decode_chunk(c) for c in reversed(chunks))
    got = runs_by_unit(fleet_lives(merged, history.events))
    train = cmapss.load_train()
    expected = {u: train[u] for u in units}
    assert sorted(got) == list(units)
    for u in units:
        np.testing.assert_array_equal(reading_rows(got[u], TURBOFAN), reading_rows(expected[u], TURBOFAN))
        np.testing.assert_array_equal(got[u][:, 1], expected[u][:, 1])  # the age the actor counts
    # so the shared pipeline's training rows are the same too
    spec = fit_spec(expected, TURBOFAN)
    assert fit_spec(got, TURBOFAN) == spec
    ours, theirs = (
        build_padded_set(got, TURBOFAN, spec, 125.0),
        build_padded_set(expected, TURBOFAN, spec, 125.0),
    )
    np.testing.assert_array_equal(ours.X, theirs.X)
    np.testing.assert_array_equal(ours.y, theirs.y)


def runs_by_unit(lives: list) -> dict[int, np.ndarray]:
    """The archive's runs to failure by C-MAPSS unit number (fd001-007#0 -> 7)."""
    runs = labelled_runs(lives, TURBOFAN)
    return {
        int(runs.keys[i].split("#")[0].split("-")[1]): t for i, t in {**runs.fit, **runs.held_out}.items()
    }
