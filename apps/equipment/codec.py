"""EquipmentState to and from the plain JSON dict kept in actor state.

Times are epoch-second floats and arrays prefixed text (see domain.py on why). Layout 2 (`v`: 2) keeps
the bulky parts packed (packing.py: the window's rows with their seqs and times, the baseline, the
history and the hysteresis checkpoints, column by column, lossless, zlib): ~11 KB after 190 readings of
a sensor reporting at a fixed resolution where layout 1 (`v`: 1, JSON lists and base64 float64) held
~46 KB, and cheaper to write on every call; ~7 KB after 62 readings, 14.5 KB with a full history (500
predictions). Layout 1 and its older forms are still read: each field
added since has a default for state written before it.
"""

from __future__ import annotations

import json
import weakref
from collections import deque
from itertools import chain
from operator import attrgetter
from typing import Any, Final

import numpy as np
import orjson

from apps.common.features import decode_array, encode_array, reading_columns
from apps.common.profiles import EquipmentProfile, get_profile
from apps.equipment.alarms import AlertHysteresis, TimedAlarm
from apps.equipment.backlog import PredictionBacklog
from apps.equipment.domain import HISTORY_LIMIT, STATE_VERSION, EquipmentState, HistoryPoint
from apps.equipment.packing import pack_columns, pack_text, unpack_columns, unpack_text
from apps.equipment.recent import RecentReadings
from apps.equipment.sequence import SequenceTracker

JSON_LAYOUT: Final = STATE_VERSION  # 1: lists and base64 float64, as written before packing
PACKED_LAYOUT: Final = 2


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
    # One flat pass over the points' fields: a third of building the array from a tuple per point.
    history = np.fromiter(
        chain.from_iterable(map(_HISTORY_FIELDS, state.history)),
        dtype=np.float64,
        count=4 * len(state.history),
    ).reshape(-1, 4)
    return {
        "v": PACKED_LAYOUT,
        "profile": state.profile.name,
        # seqs, times, then the reading columns: one packed array
        "window": {"packed": pack_columns(window, "window"), "columns": recent.n_columns},
        "tracker": state.tracker.to_dict(),
        "hysteresis": state.hysteresis.to_dict(),
        "silence": state.silence.to_dict(),
        "stale": state.stale.to_dict(),
        "backlog": backlog,
        "stale_since": state.stale_since,
        "last_alerts": state.last_alerts,
        "baseline": None if state.baseline is None else _packed_once(state.baseline, "baseline"),
        "head": None if state.head is None else _packed_once(state.head, "head"),
        "history": pack_columns(history, "history"),  # seq, at, predicted_rul, model_version
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


def decode_state(
    equipment_id: str, data: dict[str, Any], profiles: dict[str, EquipmentProfile] | None = None
) -> EquipmentState:
    """The state `encode_state` wrote (or an older layout of it), with the profiles it names."""
    data = json_layout(data, history=False)
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
    recent = RecentReadings.from_dict(data["window"], profile.window, tracker.last_seq, undated)
    baseline = (
        None
        if data.get("baseline") is None
        else decode_array(data["baseline"], (-1, len(profile.informative_sensors)))
    )
    # State from before the head was kept: EquipmentState takes the oldest readings held instead.
    head = None if data.get("head") is None else decode_array(data["head"], (-1, columns))
    stored_history = data.get("history") or []
    rows = (
        unpack_columns(stored_history)
        if isinstance(stored_history, str)
        else np.asarray(stored_history, dtype=np.float64).reshape(-1, 4)
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
    return EquipmentState(
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


_HISTORY_FIELDS: Final = attrgetter("seq", "at", "predicted_rul", "model_version")
# A machine's baseline is set once per life, its head once its life's first readings are in, and
# neither is changed in place (a new head is a new array): their packed text is kept with them (by
# the array's identity, dropped with the array) instead of packed again on every save.
_PACKED: dict[int, str] = {}


def _packed_once(array: np.ndarray, kind: str) -> str:
    key = id(array)
    text = _PACKED.get(key)
    if text is None:
        text = _PACKED[key] = pack_columns(array, kind)
        weakref.finalize(array, _PACKED.pop, key, None)
    return text


def json_layout(data: dict[str, Any], *, history: bool = True) -> dict[str, Any]:
    """A stored state in the shape of layout 1, which `decode_state` reads (tests build the older
    forms of layout 1 from it); with `history` False its history is left packed (`decode_state`
    reads the array directly: a list per point first was a tenth of its decoding)."""
    if data.get("v") == JSON_LAYOUT:
        return data
    if data.get("v") != PACKED_LAYOUT:
        raise ValueError(f"unsupported equipment state version {data.get('v')!r}")
    window = unpack_columns(data["window"]["packed"])
    columns = int(data["window"]["columns"])
    if window.shape[1] != columns + 2:
        raise ValueError("packed window: columns do not match")
    rows = window[:, 2:]
    out = {
        **data,
        "v": JSON_LAYOUT,
        "window": {
            "rows": {"capacity": max(len(rows), 1), "columns": columns, "data": encode_array(rows)},
            "seqs": [int(s) for s in window[:, 0]],
            "times": window[:, 1].tolist(),
        },
        "baseline": None if data.get("baseline") is None else encode_array(unpack_columns(data["baseline"])),
        "head": None if data.get("head") is None else encode_array(unpack_columns(data["head"])),
        "history": (
            [[int(s), a, r, int(m)] for s, a, r, m in unpack_columns(data["history"]).tolist()]
            if history
            else data["history"]
        ),
        "checkpoints": json.loads(unpack_text(data["checkpoints"])),
    }
    backlog = data.get("backlog")
    if backlog and backlog.get("rows") is not None:
        out["backlog"] = {**backlog, "rows": encode_array(unpack_columns(backlog["rows"]))}
    return out
