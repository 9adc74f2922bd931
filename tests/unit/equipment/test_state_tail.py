"""Layout 3 (codec.py): the window and the history stored as a snapshot kept between saves plus the
rows added since, so that a save costs what changed; every state decodes to the one encoded."""

from __future__ import annotations

import json
import math
import operator
import struct
from collections import deque
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from apps.common import cmapss
from apps.common.contracts import Reading
from apps.common.profiles import TURBOFAN
from apps.equipment import codec
from apps.equipment.codec import (
    HISTORY_TAIL,
    PACKED_LAYOUT,
    TAIL_LAYOUT,
    WINDOW_TAIL,
    decode_state,
    encode_state,
    json_layout,
    state_text,
)
from apps.equipment.domain import HISTORY_LIMIT, EquipmentState, HistoryPoint
from apps.equipment.lifecycle import retire, start_life
from apps.equipment.packing import (
    PackedRows,
    SavedRows,
    decode_rows,
    encode_rows,
    pack_columns,
    read_rows,
    row_checksums,
    unpack_columns,
)
from vigil.fleet import VALUE_COLUMNS

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RNG = np.random.default_rng(13)


@pytest.fixture(scope="module")
def trajectory() -> np.ndarray:
    return cmapss.load_train()[1]


def reading(trajectory: np.ndarray, seq: int) -> Reading:
    row = trajectory[(seq - 1) % len(trajectory)]
    return Reading(
        equipment_id="m-1",
        profile="turbofan",
        timestamp=T0 + timedelta(seconds=seq, microseconds=seq * 1013),
        seq=seq,
        values=dict(zip(VALUE_COLUMNS, [float(x) for x in row[2:]], strict=True)),
    )


def predict(state: EquipmentState, now: float) -> None:
    """The owed windows predicted as ONNX would (float32 RULs, off a line by some noise)."""
    assert state.backlog is not None
    owed = state.backlog.seqs[:]
    ruls = np.float32(150.0 - np.array(owed) * 0.61 + RNG.normal(0.0, 8.0, len(owed))).tolist()
    state.record_predictions(list(zip(owed, ruls, strict=True)), 3, now)


def ingest(state: EquipmentState, trajectory: np.ndarray, seqs: range | list[int], now: float) -> None:
    state.apply_readings([reading(trajectory, s) for s in seqs], now)
    predict(state, now + 0.01)


def canonical(state: EquipmentState) -> str:
    """Every field of the state as layout 1 (arrays as base64 of their float64 bytes), whatever its
    snapshots and tails: two states with the same text hold the same bits but for the history's
    floats, which `history_bits` compares."""
    return json.dumps(json_layout(json.loads(json.dumps(encode_state(state)))))


def history_bits(state: EquipmentState) -> list[tuple[int, bytes, bytes, int]]:
    return [
        (p.seq, struct.pack("<d", p.at), struct.pack("<d", p.predicted_rul), p.model_version)
        for p in state.history
    ]


def saved(state: EquipmentState) -> str:
    """What the actor writes, checked: the text decodes to the same state, which encodes to that
    very text again (an unchanged state after a reactivation is not written)."""
    text = json.dumps(encode_state(state))
    back = decode_state(state.equipment_id, json.loads(text))
    assert canonical(back) == canonical(state)
    assert history_bits(back) == history_bits(state)
    assert list(back.recent.seqs) == list(state.recent.seqs)
    assert json.dumps(encode_state(back)) == text
    return text


def test_appends_reuse_the_snapshot_until_the_tail_is_full(trajectory: np.ndarray) -> None:
    state = EquipmentState.new("m-1", TURBOFAN)
    data = json.loads(saved(state))
    assert data["v"] == TAIL_LAYOUT and data["window"]["skip"] == 0 and data["window"]["tail"] == ""
    snapshots, tails = [], []
    for seq in range(1, 200):  # past the 119 rows held: each save then drops the oldest
        ingest(state, trajectory, [seq], 1000.0 + seq)
        window = json.loads(saved(state))["window"]
        snapshots.append(window["packed"])
        tails.append(len(decode_rows(window["tail"], 19)))
    # one pack every WINDOW_TAIL + 1 saves: the others add a row to the tail and keep the snapshot
    packs = [i for i, rows in enumerate(tails) if rows == 0]
    assert max(tails) == WINDOW_TAIL and set(np.diff(packs)) == {WINDOW_TAIL + 1}
    assert sum(a != b for a, b in zip(snapshots, snapshots[1:], strict=False)) == sum(
        t == 0 for t in tails[1:]
    )


def test_a_history_at_its_limit_drops_its_oldest_point_between_snapshots(trajectory: np.ndarray) -> None:
    state = EquipmentState.new("m-1", TURBOFAN)
    ingest(state, trajectory, range(1, 491), 1000.0)
    for seq in range(491, 531):
        ingest(state, trajectory, [seq], 1000.0 + seq)
        history = json.loads(saved(state))["history"]
        assert len(state.history) == min(seq, HISTORY_LIMIT)  # the first windows padded
        assert len(decode_rows(history["tail"], 4)) <= HISTORY_TAIL
    assert len(state.history) == HISTORY_LIMIT and history["skip"] > 0


def test_a_late_reading_in_the_middle_packs_the_window_afresh(trajectory: np.ndarray) -> None:
    state = EquipmentState.new("m-1", TURBOFAN)
    ingest(state, trajectory, [s for s in range(1, 101) if s != 97], 1000.0)
    saved(state)
    for seq in range(101, 104):
        ingest(state, trajectory, [seq], 1000.0 + seq)
        window = json.loads(saved(state))["window"]
    assert window["tail"] != ""  # a tail stands: the snapshot's rows are not those held after 97
    ingest(state, trajectory, [97], 1200.0)  # a rewind: its windows and their predictions again
    assert list(state.recent.seqs)[-8:] == [96, 97, 98, 99, 100, 101, 102, 103]
    data = json.loads(saved(state))
    assert data["window"]["skip"] == 0 and data["window"]["tail"] == ""
    assert unpack_columns(data["window"]["packed"])[:, 0].tolist() == list(state.recent.seqs)


def test_a_late_reading_owed_before_and_a_resend_round_trip(trajectory: np.ndarray) -> None:
    state = EquipmentState.new("m-1", TURBOFAN)
    ingest(state, trajectory, range(1, 80), 1000.0)
    state.apply_readings([reading(trajectory, s) for s in (80, 82, 83)], 1100.0)  # inference down
    saved(state)
    state.apply_readings([reading(trajectory, 81)], 1101.0)  # placed among owed windows
    before = json.loads(saved(state))
    state.apply_readings([reading(trajectory, 83)], 1102.0)  # a resend: counted, no row changes
    after = encode_state(state)
    assert (after["window"], after["history"]) == (before["window"], before["history"])
    predict(state, 1103.0)
    saved(state)


def test_retire_and_a_new_life_round_trip(trajectory: np.ndarray) -> None:
    state = EquipmentState.new("m-1", TURBOFAN)
    ingest(state, trajectory, range(1, 150), 1000.0)
    for seq in range(150, 154):
        ingest(state, trajectory, [seq], 1000.0 + seq)
        saved(state)
    retire(state, 1300.0)
    saved(state)
    assert start_life(state, "maintenance", 140, "", 1301.0) is not None  # rows after 140 kept
    data = json.loads(saved(state))
    assert unpack_columns(data["window"]["packed"])[:, 0].tolist() == list(range(141, 154))
    for seq in range(154, 170):
        ingest(state, trajectory, [seq], 1300.0 + seq)
        saved(state)
    assert start_life(state, "failure", 169, "", 1500.0) is not None  # no row kept: an empty window
    data = json.loads(saved(state))
    assert len(state.recent) == 0 and unpack_columns(data["window"]["packed"]).shape == (0, 19)
    ingest(state, trajectory, [170, 171], 1501.0)
    saved(state)


def test_a_window_of_other_columns_starts_again_from_a_layout_3_state(trajectory: np.ndarray) -> None:
    state = EquipmentState.new("m-1", TURBOFAN)
    ingest(state, trajectory, range(1, 70), 1000.0)
    ingest(state, trajectory, [70], 1070.0)
    data = json.loads(json.dumps(encode_state(state)))
    rows = read_rows(data["window"])[1]
    narrow = PackedRows.fresh(rows[:, :-3], "test-narrow").to_dict()  # before the settings were kept
    back = decode_state("m-1", {**data, "window": {**narrow, "columns": 14}})
    assert len(back.recent) == 0 and back.recent.n_columns == 17
    ingest(back, trajectory, [71], 1071.0)
    assert json.loads(saved(back))["window"]["tail"] == ""


def test_layout_2_is_read_and_its_snapshots_kept(trajectory: np.ndarray) -> None:
    state = EquipmentState.new("m-1", TURBOFAN)
    ingest(state, trajectory, range(1, 130), 1000.0)
    for seq in range(130, 134):
        ingest(state, trajectory, [seq], 1000.0 + seq)
        data = json.loads(json.dumps(encode_state(state)))
    assert data["window"]["tail"] != "" and data["history"]["tail"] != ""
    window = pack_columns(read_rows(data["window"])[1], "window")
    history = pack_columns(read_rows(data["history"])[1], "history")
    old = {**data, "v": PACKED_LAYOUT, "window": {"packed": window, "columns": 17}, "history": history}
    back = decode_state("m-1", old)
    assert canonical(back) == canonical(state) and history_bits(back) == history_bits(state)
    again = encode_state(back)
    assert again["window"] == {"packed": window, "skip": 0, "tail": "", "columns": 17}
    assert again["history"] == {"packed": history, "skip": 0, "tail": ""}


def test_sizes_with_the_longest_tails_stay_under_16_kib(trajectory: np.ndarray) -> None:
    """Issue 13: 16 KiB a machine. The largest state is the one just before a window re-snapshot
    (WINDOW_TAIL rows in its tail and as many dropped from its snapshot) with a full history."""
    sizes = {}
    for readings in (62, 620):
        state = EquipmentState.new("m-1", TURBOFAN)
        ingest(state, trajectory, range(1, readings - 40), 1000.0)
        largest = 0
        for seq in range(readings - 40, readings + 1):
            ingest(state, trajectory, [seq], 1000.0 + seq)
            largest = max(largest, len(saved(state)))
        sizes[readings] = largest
    assert len(state.history) == HISTORY_LIMIT
    assert sizes[62] < 9_000 and sizes[620] < 16 * 1024


def test_packed_rows_follow_appends_drops_and_anything_else() -> None:
    rows = np.column_stack((np.arange(10.0), RNG.normal(size=(10, 2))))
    start = PackedRows.fresh(rows, "test-follow")
    kept = SavedRows.of(start.snapshot, rows)
    later = np.vstack((rows[3:], [[10.0, -0.0, np.nan], [11.0, 5e-324, -np.inf]]))
    moved, kept = kept.follow(later, "test-follow", 4)
    assert (moved.snapshot.text, moved.snapshot.skip, moved.tail.shape) == (start.snapshot.text, 3, (2, 3))
    snapshot, held = read_rows(json.loads(json.dumps(moved.to_dict())))
    assert held.tobytes() == later.tobytes() and (snapshot.skip, snapshot.held) == (3, 9)
    again, _ = kept.follow(later, "test-follow", 4)
    assert again.snapshot is moved.snapshot  # nothing changed: nothing to do
    changed = later.copy()
    changed[2, 1] = np.nextafter(changed[2, 1], 1.0)  # one bit of a row the snapshot holds
    assert kept.follow(changed, "test-follow", 4)[0].snapshot.skip == 0
    signs = later.copy()
    signs[4, 1:] = -signs[4, 1:]  # two sign bits of one row: they must not cancel in its checksum
    assert kept.follow(signs, "test-follow", 4)[0].snapshot.text != start.snapshot.text
    inserted = np.vstack((later[:2], [[4.5, 0.0, 0.0]], later[2:]))
    fresh, _ = kept.follow(inserted, "test-follow", 4)
    assert read_rows(fresh.to_dict())[1].tobytes() == inserted.tobytes() and fresh.snapshot.skip == 0
    longer = np.vstack((later, [[12.0, 1.0, 1.0], [13.0, 1.0, 1.0], [14.0, 1.0, 1.0]]))
    assert kept.follow(longer, "test-follow", 4)[0].tail.shape[0] == 0  # five in the tail: packed afresh
    assert kept.follow(np.zeros((0, 3)), "test-follow", 4)[0].snapshot.rows == 0
    with pytest.raises(ValueError, match="whole number of rows"):
        decode_rows(encode_rows(rows)[:-4], 3)


def test_a_row_checksum_changes_with_any_bit_of_the_row() -> None:
    rows = np.column_stack((np.arange(1.0, 120.0), RNG.normal(size=(119, 18))))
    sums = row_checksums(rows)
    for row, column, bit in [(0, 0, 0), (5, 3, 63), (60, 18, 52), (118, 10, 31)]:
        flipped = rows.copy()
        flipped.view(np.uint64)[row, column] ^= np.uint64(1 << bit)
        assert np.flatnonzero(row_checksums(flipped) != sums).tolist() == [row]


def test_a_held_window_row_changed_in_place_is_packed_afresh(trajectory: np.ndarray) -> None:
    """The window is followed by a checksum per row: a value changed in a row still held (same seq)
    gives a new snapshot with that value, not the old snapshot's."""
    state = EquipmentState.new("m-1", TURBOFAN)
    ingest(state, trajectory, range(1, 70), 1000.0)
    first = json.loads(saved(state))["window"]
    ingest(state, trajectory, [70], 1070.0)
    assert json.loads(saved(state))["window"]["packed"] == first["packed"]  # an append: a tail
    state.recent.times[3] += 0.5  # a held row's time, in place: its seq is the same
    window = json.loads(saved(state))["window"]
    assert window["packed"] != first["packed"] and (window["skip"], window["tail"]) == (0, "")


def test_the_cache_keeps_no_copy_of_the_rows(trajectory: np.ndarray) -> None:
    """Issue 13: what is kept between saves of a machine with a full history is its snapshots'
    text, 8 bytes a window row and the history's points by reference, not the rows (~34 KB)."""
    state = EquipmentState.new("m-1", TURBOFAN)
    for seq in range(1, 620):
        ingest(state, trajectory, [seq], 1000.0 + seq)
        saved(state)
    window = codec._WINDOWS[id(state.recent)]
    assert window.checksums.shape == (len(state.recent),) and window.checksums.base is None
    assert not any(isinstance(getattr(window.snapshot, f), np.ndarray) for f in window.snapshot.__slots__)
    snapshot, points = codec._HISTORIES[id(state.history)]
    assert len(points) == HISTORY_LIMIT and all(map(operator.is_, points, state.history))
    assert not any(isinstance(getattr(snapshot, f), np.ndarray) for f in snapshot.__slots__)


def test_a_history_rebuilt_with_equal_points_is_stored_from_them() -> None:
    """The history is followed by the identity of its points: one rebuilt with an equal point whose
    RUL is -0.0 instead of 0.0 is stored as it is now."""
    state = EquipmentState.new("m-1", TURBOFAN)
    state.history.extend(HistoryPoint(s, 1000.0 + s, 0.0, 1) for s in range(1, 21))
    saved(state)
    state.history.append(HistoryPoint(21, 1021.0, 0.0, 1))
    saved(state)
    rebuilt = [HistoryPoint(p.seq, p.at, -0.0, 1) for p in state.history]
    state.history = deque(rebuilt, maxlen=HISTORY_LIMIT)
    saved(state)
    state.history.clear()
    state.history.extend(HistoryPoint(p.seq, p.at, 0.0, 1) for p in rebuilt)  # the same deque
    saved(state)
    assert all(struct.pack("<d", p.predicted_rul) == struct.pack("<d", 0.0) for p in state.history)


def test_the_stored_text_reads_back_as_json_dumps_would_write_it(trajectory: np.ndarray) -> None:
    state = EquipmentState.new("m-1", TURBOFAN)
    ingest(state, trajectory, range(1, 70), 1000.0)
    text = state_text(state)
    assert json.loads(text) == json.loads(json.dumps(encode_state(state))) and "NaN" not in text
    assert state_text(decode_state("m-1", json.loads(text))) == text  # reactivated, unchanged: no write
    state.predicted_rul = float("nan")  # orjson would write null: json's NaN instead
    back = decode_state("m-1", json.loads(state_text(state)))
    assert back.predicted_rul is not None and math.isnan(back.predicted_rul)
    state.predicted_rul = np.float64(42.5)  # not a type orjson writes: json's text
    assert json.loads(state_text(state))["predicted_rul"] == 42.5


def test_a_stored_history_longer_than_the_limit_is_stored_afresh(trajectory: np.ndarray) -> None:
    state = EquipmentState.new("m-1", TURBOFAN)
    ingest(state, trajectory, range(1, 30), 1000.0)
    data = json.loads(json.dumps(encode_state(state)))
    rows = np.array([[s, 1000.0 + s, 100.0 - s, 3.0] for s in range(1, HISTORY_LIMIT + 11)])
    back = decode_state("m-1", {**data, "history": PackedRows.fresh(rows, "test-long").to_dict()})
    assert [p.seq for p in back.history] == list(range(11, HISTORY_LIMIT + 11))  # the deque's limit
    snapshot, held = read_rows(encode_state(back)["history"])
    assert held.tobytes() == rows[10:].tobytes() and snapshot.skip == 0
