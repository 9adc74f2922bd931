"""EquipmentState to and from the plain JSON dict kept in actor state.

Times are epoch-second floats and arrays prefixed text (see domain.py on why). The actor writes the
whole state on every call, so what a save costs is what it costs to encode. Layout 3 (`v`: 3, written)
keeps the bulky parts packed (packing.py: column by column, lossless, zlib) and the two that change on
every reading, the window's rows (with their seqs and times) and the prediction history, as a packed
snapshot reused from an earlier save plus the rows added since as raw float64 (`PackedRows`): packing
them both (and building the history's array) was ~0.4 ms of the ~0.62 ms a save of a machine with a
full history cost in layout 2, ~45% of the actor's CPU for a one-reading call, where a row added to a
tail costs a few µs (~0.17 ms a save in all); a snapshot is packed afresh once its tail holds more than
WINDOW_TAIL / HISTORY_TAIL rows, or when the rows held are not its rows plus appended ones (a late
reading placed among them, a rewind, a new life). What the next save needs of the last one (its
snapshots, a checksum per window row, the history's points: no copy of the rows) is kept here, by the
identity of the window and history objects, and seeded by `decode_state` with what it read, so that
an unchanged state encodes to the very text it was read from. A machine's state is ~7 KB after 62
readings and 13.5 KB with a full history (500 predictions) with empty tails, up to ~8 and ~15 KB with
the longest, under issue 13's 16 KiB. Layout 2 (`v`: 2: the window and the history packed whole) and
layout 1 (`v`: 1, JSON lists and base64 float64: ~46 KB after 190 readings) and its older forms are
still read: each field added since has a default for state written before it.
"""

from __future__ import annotations

import json
import math
import weakref
from collections import deque
from collections.abc import Sequence
from itertools import chain, islice
from operator import attrgetter, is_
from typing import Any, Final, TypeVar

import numpy as np
import orjson

from apps.common.features import decode_array, encode_array, reading_columns
from apps.common.profiles import EquipmentProfile, get_profile
from apps.equipment.alarms import AlertHysteresis, TimedAlarm
from apps.equipment.backlog import PredictionBacklog
from apps.equipment.domain import HISTORY_LIMIT, STATE_VERSION, EquipmentState, HistoryPoint
from apps.equipment.packing import (
    PackedRows,
    SavedRows,
    Snapshot,
    pack_columns,
    pack_text,
    read_rows,
    unpack_columns,
    unpack_text,
)
from apps.equipment.recent import RecentReadings
from apps.equipment.sequence import SequenceTracker

JSON_LAYOUT: Final = STATE_VERSION  # 1: lists and base64 float64, as written before packing
PACKED_LAYOUT: Final = 2  # window and history packed whole on every save (still read)
TAIL_LAYOUT: Final = 3  # window and history as a snapshot plus the rows added since (written)
# Rows added since a snapshot before it is packed afresh: one pack every this many saves of a reading
# each (~0.15-0.2 ms, where a tail costs a few µs), at ~250 bytes a window row and ~50 a prediction
# held twice over (tail, and the snapshot's dropped rows) until then: the longest tails take a state
# with a full history from ~12.6 to ~14.8 KB (test_state_tail.py), under issue 13's 16 KiB.
WINDOW_TAIL: Final = 8
HISTORY_TAIL: Final = 16


def encode_state(state: EquipmentState) -> dict[str, Any]:
    """The state as plain JSON for actor state (see the module docstring of domain.py on its form)."""
    assert state.hysteresis is not None and state.silence is not None
    assert state.stale is not None and state.backlog is not None
    recent = state.recent
    window = np.column_stack(
        (np.asarray(recent.seqs, dtype=np.float64), np.asarray(recent.times), recent.last(len(recent)))
    )
    backlog = state.backlog.to_dict()
    if state.backlog.rows is not None:
        backlog["rows"] = pack_columns(state.backlog.rows, "backlog")
    known = _WINDOWS.get(id(recent))
    if known is None:
        packed = PackedRows.fresh(window, "window")
        _remember(_WINDOWS, recent, SavedRows.of(packed.snapshot, window))
    else:
        packed, saved = known.follow(window, "window", WINDOW_TAIL)
        _remember(_WINDOWS, recent, saved)
    return {
        "v": TAIL_LAYOUT,
        "profile": state.profile.name,
        # seqs, times, then the reading columns: one array
        "window": {**packed.to_dict(), "columns": recent.n_columns},
        "tracker": state.tracker.to_dict(),
        "hysteresis": state.hysteresis.to_dict(),
        "silence": state.silence.to_dict(),
        "stale": state.stale.to_dict(),
        "backlog": backlog,
        "stale_since": state.stale_since,
        "last_alerts": state.last_alerts,
        "baseline": None if state.baseline is None else _packed_once(state.baseline, "baseline"),
        "head": None if state.head is None else _packed_once(state.head, "head"),
        "history": _encode_history(state.history),  # seq, at, predicted_rul, model_version
        # The hysteresis before each of the last predictions: dicts alike but for a count or two.
        # orjson: ten times json's speed on these, and they hold only ints, strings and finite times
        # (time.time()), which it writes as json does but for spacing.
        "checkpoints": pack_text(
            orjson.dumps([[seq, checkpoint] for seq, checkpoint in state.checkpoints]).decode()
        ),
        "readings_applied": state.readings_applied,
        "duplicates": state.duplicates,
        "predicted_rul": state.predicted_rul,
        "model_version": state.model_version,
        "last_reading_at": state.last_reading_at,
        "updated_at": state.updated_at,
        "revision": state.revision,
        "retired_at": state.retired_at,
        "life": state.life,
        "life_start_seq": state.life_start_seq,
        "life_started_by": state.life_started_by,
        "life_readings": state.life_readings,
        "down_since": state.down_since,
    }


def state_text(state: EquipmentState) -> str:
    """The state as the JSON text the actor stores: `orjson`'s (~2 µs where `json.dumps` takes ~30
    on every save), unless the state holds what it does not write as `json` does, which `json.loads`
    then reads back the same: a non-finite float (orjson writes null) or a type other than JSON's own
    (a numpy scalar, a key not a string), which `json.dumps` writes as before."""
    data = encode_state(state)
    if _finite(data):
        try:
            return orjson.dumps(data).decode()
        except TypeError:
            pass
    return json.dumps(data)


def _finite(value: object) -> bool:
    """No NaN or infinity anywhere in `value` (plain JSON data)."""
    if type(value) is float:
        return math.isfinite(value)
    if type(value) is dict:
        return all(map(_finite, value.values()))
    if type(value) is list:
        return all(map(_finite, value))
    return True


def decode_state(
    equipment_id: str, data: dict[str, Any], profiles: dict[str, EquipmentProfile] | None = None
) -> EquipmentState:
    """The state `encode_state` wrote (or an older layout of it), with the profiles it names."""
    packed = data.get("v") in (PACKED_LAYOUT, TAIL_LAYOUT)
    window_snapshot, window_rows = _stored_rows(data["window"]) if packed else (None, None)
    history_snapshot, history_rows = _stored_rows(data["history"]) if packed else (None, None)
    data = json_layout(data, history=False, window=window_rows)
    profile = get_profile(data["profile"]) if profiles is None else get_profile(data["profile"], profiles)
    tracker = SequenceTracker.from_dict(data.get("tracker") or {"last_seq": data["last_seq"]})
    # State from before reading timestamps were kept: its rows are dated by their last receipt.
    undated = float(data.get("last_reading_at") or 0.0)
    columns = len(reading_columns(profile))
    stored = data["window"].get("rows", data["window"])
    if int(stored["columns"]) != columns:
        # Kept before the operating settings were kept beside the sensors (per-condition features
        # need them): those rows cannot be featurised, so the window starts again at the next reading.
        data = {**data, "window": RecentReadings(profile.window, columns).to_dict(), "backlog": None}
        window_rows = None
    recent = RecentReadings.from_dict(data["window"], profile.window, tracker.last_seq, undated)
    baseline = (
        None
        if data.get("baseline") is None
        else decode_array(data["baseline"], (-1, len(profile.informative_sensors)))
    )
    # State from before the head was kept: EquipmentState takes the oldest readings held instead.
    head = None if data.get("head") is None else decode_array(data["head"], (-1, columns))
    rows = (
        history_rows
        if history_rows is not None
        else np.asarray(data.get("history") or [], dtype=np.float64).reshape(-1, 4)
    )
    if rows.shape[1] != 4:
        raise ValueError("history: four columns are needed (seq, at, predicted_rul, model_version)")
    seqs, versions = rows[:, 0].astype(np.int64).tolist(), rows[:, 3].astype(np.int64).tolist()
    history = deque(
        map(HistoryPoint, seqs, rows[:, 1].tolist(), rows[:, 2].tolist(), versions), HISTORY_LIMIT
    )

    def opt_float(key: str) -> float | None:
        value = data.get(key)
        return None if value is None else float(value)

    mv = data.get("model_version")
    reopen = profile.reopen_within_seconds
    state = EquipmentState(
        equipment_id=equipment_id,
        profile=profile,
        recent=recent,
        tracker=tracker,
        hysteresis=AlertHysteresis.from_dict(data["hysteresis"], profile.thresholds, reopen),
        silence=TimedAlarm.from_dict("silent", data["silence"], profile.silence_after_seconds, reopen),
        stale=TimedAlarm.from_dict("stale", data.get("stale"), profile.stale_after_seconds, reopen),
        backlog=PredictionBacklog.from_dict(data.get("backlog"), profile, undated),
        stale_since=opt_float("stale_since"),
        last_alerts={str(k): str(v) for k, v in (data.get("last_alerts") or {}).items()},
        baseline=baseline,
        head=head,
        history=history,
        checkpoints=deque((int(seq), dict(state)) for seq, state in data.get("checkpoints") or []),
        readings_applied=int(data["readings_applied"]),
        duplicates=int(data["duplicates"]),
        predicted_rul=opt_float("predicted_rul"),
        model_version=None if mv is None else int(mv),
        last_reading_at=opt_float("last_reading_at"),
        updated_at=opt_float("updated_at"),
        revision=int(data.get("revision") or 0),
        retired_at=opt_float("retired_at"),
        # State from before lives were kept: every reading so far is the first life's.
        life=int(data.get("life") or 0),
        life_start_seq=None if data.get("life_start_seq") is None else int(data["life_start_seq"]),
        life_started_by=data.get("life_started_by"),
        life_readings=int(data.get("life_readings", data["readings_applied"])),
        down_since=opt_float("down_since"),
    )
    # What was read is what was last saved: an unchanged state is encoded to the very same text again
    # (the actor then skips the write), and a changed one from this snapshot. The window's rows are
    # compared with those held on the next save (by checksum); the history's points are not (by
    # identity), so its snapshot is kept only if its rows are the points' own (not if the deque's
    # limit dropped some).
    if window_snapshot is not None and window_rows is not None:
        _remember(_WINDOWS, state.recent, SavedRows.of(window_snapshot, window_rows))
    points = list(state.history)
    if (
        history_snapshot is not None
        and history_rows is not None
        and _history_rows(points).tobytes() == history_rows.tobytes()
    ):
        _remember(_HISTORIES, state.history, (history_snapshot, points))
    return state


_HISTORY_FIELDS: Final = attrgetter("seq", "at", "predicted_rul", "model_version")
# A machine's baseline is set once per life, its head once its life's first readings are in, and
# neither is changed in place (a new head is a new array): their packed text is kept with them (by
# the array's identity, dropped with the array) instead of packed again on every save.
_PACKED: dict[int, str] = {}


def _packed_once(array: np.ndarray, kind: str) -> str:
    text = _PACKED.get(id(array))
    if text is None:
        text = pack_columns(array, kind)
        _remember(_PACKED, array, text)
    return text


# The window and the history as last saved, by the identity of the RecentReadings and of the history
# deque they were saved from, dropped with them: layout 3's snapshot (its text and row counts) and what
# the next save compares the rows it holds with, so that a late reading inserted, a rewind or a new
# life is stored packed afresh however it came about: a checksum per window row (`SavedRows.follow`),
# the history's points themselves (`_dropped`, by identity). No copy of the rows (issue 13: ~18 KB of
# window and ~16 KB of history rows a machine kept here, ~40% of an active actor's memory).
_WINDOWS: dict[int, SavedRows] = {}
_HISTORIES: dict[int, tuple[Snapshot, list[HistoryPoint]]] = {}
_V = TypeVar("_V")


def _remember(cache: dict[int, _V], owner: object, value: _V) -> None:
    key = id(owner)
    if key not in cache:
        weakref.finalize(owner, cache.pop, key, None)
    cache[key] = value


def _history_rows(points: Sequence[HistoryPoint]) -> np.ndarray:
    # One flat pass over the points' fields: a third of building the array from a tuple per point.
    return np.fromiter(
        chain.from_iterable(map(_HISTORY_FIELDS, points)), dtype=np.float64, count=4 * len(points)
    ).reshape(-1, 4)


def _dropped(before: list[HistoryPoint], points: list[HistoryPoint]) -> int | None:
    """How many of the oldest points saved before are gone, when the points held now are the rest of
    them followed by new ones, else None. Compared by identity: a point is immutable, so the very
    object saved before holds the same bits (a point rebuilt on a rewind is a new object), and
    building the history's array again to compare it would cost half of packing it."""
    if not points:
        return len(before)
    first = points[0]
    dropped = next((i for i, point in enumerate(before) if point is first), len(before))
    kept = len(before) - dropped
    if kept > len(points) or not all(map(is_, islice(points, kept), islice(before, dropped, None))):
        return None
    return dropped


def _encode_history(history: deque[HistoryPoint]) -> dict[str, Any]:
    points = list(history)
    known = _HISTORIES.get(id(history))
    dropped = None if known is None else _dropped(known[1], points)
    snapshot = None
    if known is not None and dropped is not None:
        snapshot = known[0].advance(dropped, len(points) - (len(known[1]) - dropped), HISTORY_TAIL)
    if snapshot is None:
        packed = PackedRows.fresh(_history_rows(points), "history")
    else:  # the tail's rows built from its points: a few µs for at most HISTORY_TAIL of them
        packed = PackedRows(snapshot, _history_rows(points[len(points) - snapshot.tail_rows :]))
    _remember(_HISTORIES, history, (packed.snapshot, points))
    return packed.to_dict()


def _stored_rows(stored: str | dict[str, Any]) -> tuple[Snapshot, np.ndarray]:
    """Layout 3's rows (a dict with the snapshot's `skip` and a tail), or layout 2's packed whole:
    their snapshot and the rows held."""
    if isinstance(stored, dict) and "skip" in stored:
        return read_rows(stored)
    text = stored["packed"] if isinstance(stored, dict) else stored
    rows = unpack_columns(text)
    return Snapshot(text, len(rows), 0, len(rows)), rows


def json_layout(
    data: dict[str, Any], *, history: bool = True, window: np.ndarray | None = None
) -> dict[str, Any]:
    """A stored state in the shape of layout 1, which `decode_state` reads (tests build the older
    forms of layout 1 from it); with `history` False its history is left packed (`decode_state`
    reads the array directly: a list per point first was a tenth of its decoding); `window`: the
    rows of its window already read (by `decode_state`)."""
    if data.get("v") == JSON_LAYOUT:
        return data
    if data.get("v") not in (PACKED_LAYOUT, TAIL_LAYOUT):
        raise ValueError(f"unsupported equipment state version {data.get('v')!r}")
    held = _stored_rows(data["window"])[1] if window is None else window
    columns = int(data["window"]["columns"])
    if held.shape[1] != columns + 2:
        raise ValueError("packed window: columns do not match")
    rows = held[:, 2:]
    out = {
        **data,
        "v": JSON_LAYOUT,
        "window": {
            "rows": {"capacity": max(len(rows), 1), "columns": columns, "data": encode_array(rows)},
            "seqs": [int(s) for s in held[:, 0]],
            "times": held[:, 1].tolist(),
        },
        "baseline": None if data.get("baseline") is None else encode_array(unpack_columns(data["baseline"])),
        "head": None if data.get("head") is None else encode_array(unpack_columns(data["head"])),
        "history": (
            [[int(s), a, r, int(m)] for s, a, r, m in _stored_rows(data["history"])[1].tolist()]
            if history
            else data["history"]
        ),
        "checkpoints": json.loads(unpack_text(data["checkpoints"])),
    }
    backlog = data.get("backlog")
    if backlog and backlog.get("rows") is not None:
        out["backlog"] = {**backlog, "rows": encode_array(unpack_columns(backlog["rows"]))}
    return out
