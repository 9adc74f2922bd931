"""Packed actor state (layouts 2 and 3): lossless bit for bit, compact, and layout 1 still read."""

from __future__ import annotations

import base64
import json
import zlib
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from apps.common import cmapss
from apps.common.contracts import Reading
from apps.common.profiles import TURBOFAN
from apps.equipment.announce import build_alert, remember_alert
from apps.equipment.codec import PACKED_LAYOUT, TAIL_LAYOUT, decode_state, encode_state, json_layout
from apps.equipment.domain import HISTORY_LIMIT, EquipmentState
from apps.equipment.packing import PREFIX, ZPREFIX, pack_columns, pack_text, unpack_columns, unpack_text
from vigil.fleet import VALUE_COLUMNS, simulated_fleet

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a.view(np.int64), b.view(np.int64))


@pytest.fixture(scope="module")
def train() -> dict[int, np.ndarray]:
    return cmapss.load_train()


def test_real_rows_round_trip_bit_for_bit_and_pack_small(train: dict[int, np.ndarray]) -> None:
    rows = train[1][:119, 2:19].copy()
    packed = pack_columns(rows, "test-real")
    assert same_bits(unpack_columns(packed), rows)
    # base64 of the float64 bytes is 4/3 of 8 bytes a value; sensors at 0.01 take ~2 bytes
    assert len(packed) < rows.size * 8 * 4 / 3 / 3
    # the decimals hint of the kind is used the second time: same answer
    assert same_bits(unpack_columns(pack_columns(rows, "test-real")), rows)


@pytest.mark.parametrize(
    "values",
    [
        np.array([[-0.0, 1.5, 0.0], [0.0, -0.0, 2.0]]),  # -0.0 is not k / 10**d with an integer k
        np.array([[np.nan, np.inf, -np.inf], [1.0, 2.0, 3.0]]),
        np.random.default_rng(1).normal(size=(50, 4)) * 1e3,  # full-precision doubles
        np.array([[2.0**60, 1e300, 5e-324]]),  # beyond the exact-integer range, subnormal
        np.arange(12, dtype=np.float64).reshape(4, 3) * 0.1,  # 0.1 * k is not k / 10
        np.float32(np.random.default_rng(2).normal(size=(7, 2))).astype(np.float64),  # float32 values
        np.zeros((0, 5)),
        np.array([[1767225601.123456, 640.42, 3.0]]),  # one row: no differences
    ],
)
def test_any_array_round_trips_exactly(values: np.ndarray) -> None:
    assert same_bits(unpack_columns(pack_columns(values)), values)
    assert same_bits(unpack_columns(pack_columns(values, "test-any")), values)


def test_a_wrong_hint_falls_back_to_a_full_search() -> None:
    coarse = np.array([[1.0, 2.0], [3.0, 4.0]])
    finer = np.array([[1.25, 2.0], [3.5, 4.0]])
    assert same_bits(unpack_columns(pack_columns(coarse, "test-hint")), coarse)
    assert same_bits(unpack_columns(pack_columns(finer, "test-hint")), finer)


def test_damaged_text_is_refused() -> None:
    packed = pack_columns(np.ones((3, 2)))
    with pytest.raises(ValueError):
        unpack_columns(packed[:-8])
    with pytest.raises(ValueError):
        unpack_columns("not packed")
    assert unpack_text(pack_text('[{"a":1}]')) == '[{"a":1}]'


def machine_state(trajectory: np.ndarray, n: int, noise: float = 0.0) -> EquipmentState:
    """A machine after `n` readings, each predicted (float32 RULs, as ONNX gives them; `noise`: their
    standard deviation about a straight line, which a model's predictions are not on)."""
    rng = np.random.default_rng(5)
    state = EquipmentState.new("m-1", TURBOFAN)
    for k in range(1, n + 1):
        row = trajectory[(k - 1) % len(trajectory)]
        reading = Reading(
            equipment_id="m-1",
            profile="turbofan",
            timestamp=T0 + timedelta(seconds=k, microseconds=k * 1013),
            seq=k,
            values=dict(zip(VALUE_COLUMNS, [float(x) for x in row[2:]], strict=True)),
        )
        state.apply_readings([reading], 1000.0 + k * 1.37)
        owed = state.backlog.seqs[:] if state.backlog is not None else []
        ruls = np.float32(150.0 - np.array(owed) * 0.61 + rng.normal(0.0, noise, len(owed))).tolist()
        for t in state.record_predictions(list(zip(owed, ruls, strict=True)), 3, 1000.0 + k * 1.37 + 0.01):
            remember_alert(state, build_alert(state, t))
    return state


def test_a_machine_state_is_under_16_kib_and_decodes_to_the_same_state(train: dict[int, np.ndarray]) -> None:
    fleet = simulated_fleet(train, 2, seed=4, max_shift=0)
    state = machine_state(fleet.machines[0].trajectory, 190)
    data = encode_state(state)
    text = json.dumps(data)
    assert data["v"] == TAIL_LAYOUT and len(text) < 16 * 1024
    back = decode_state("m-1", json.loads(text))
    assert json.dumps(encode_state(back)) == text
    assert same_bits(back.recent.last(len(back.recent)), state.recent.last(len(state.recent)))
    assert list(back.recent.times) == list(state.recent.times) and list(back.history) == list(state.history)
    assert list(back.checkpoints) == list(state.checkpoints)
    assert back.baseline is not None and state.baseline is not None
    assert same_bits(back.baseline, state.baseline)
    # the next reading's features are the same from the decoded state as from the one kept in memory
    nxt = Reading(
        equipment_id="m-1",
        profile="turbofan",
        timestamp=T0 + timedelta(seconds=191),
        seq=191,
        values=dict(
            zip(VALUE_COLUMNS, [float(x) for x in fleet.machines[0].trajectory[190, 2:]], strict=True)
        ),
    )
    for s in (state, back):
        s.apply_readings([nxt], 2000.0)
    assert back.owed_features(5) == state.owed_features(5)


def test_layout_1_is_still_read(train: dict[int, np.ndarray]) -> None:
    state = machine_state(train[2], 75)
    old = json_layout(json.loads(json.dumps(encode_state(state))))
    assert old["v"] == 1 and isinstance(old["history"], list)
    back = decode_state("m-1", json.loads(json.dumps(old)))
    assert json.dumps(encode_state(back)) == json.dumps(encode_state(state))


def test_a_backlog_waiting_for_inference_is_packed_too(train: dict[int, np.ndarray]) -> None:
    state = machine_state(train[3], 70)
    later = [
        Reading(
            equipment_id="m-1",
            profile="turbofan",
            timestamp=T0 + timedelta(seconds=100 + k),
            seq=70 + k,
            values=dict(zip(VALUE_COLUMNS, [float(x) for x in train[3][69 + k, 2:]], strict=True)),
        )
        for k in range(1, 11)
    ]
    state.apply_readings(later, 3000.0)  # inference down: ten predictions owed
    data = json.loads(json.dumps(encode_state(state)))
    assert str(data["backlog"]["rows"]).startswith("p2:")
    back = decode_state("m-1", data)
    assert back.owed_features(20) == state.owed_features(20)


def test_a_full_history_state_is_well_under_16_kib_and_round_trips(train: dict[int, np.ndarray]) -> None:
    fleet = simulated_fleet(train, 2, seed=4, max_shift=0)
    state = machine_state(fleet.machines[0].trajectory, 600, noise=8.0)
    assert len(state.history) == HISTORY_LIMIT and state.head is not None
    text = json.dumps(encode_state(state))
    # ~14.5 KB (18.9 KB before its arrays were compressed); the target is 16 KiB
    assert len(text) < 15_000
    back = decode_state("m-1", json.loads(text))
    assert list(back.history) == list(state.history)
    assert all(np.float32(p.predicted_rul) == p.predicted_rul for p in back.history)
    assert back.head is not None and same_bits(back.head, state.head)
    assert json.dumps(encode_state(back)) == text


def uncompressed(packed: str) -> str:
    """A packed array as written before compression ("p1:")."""
    assert packed.startswith(ZPREFIX)
    return PREFIX + base64.b64encode(zlib.decompress(base64.b64decode(packed[len(ZPREFIX) :]))).decode()


def test_layout_2_as_written_before_compression_is_still_read(train: dict[int, np.ndarray]) -> None:
    state = machine_state(train[1], 130, noise=3.0)
    data = json.loads(json.dumps(encode_state(state)))
    old = {
        **data,
        "v": PACKED_LAYOUT,
        "window": {"packed": uncompressed(data["window"]["packed"]), "columns": data["window"]["columns"]},
        "history": uncompressed(data["history"]["packed"]),
        **{key: uncompressed(data[key]) for key in ("baseline", "head")},
    }
    back = decode_state("m-1", old)
    assert json.dumps(json_layout(encode_state(back))) == json.dumps(json_layout(data))
    assert list(back.history) == list(state.history)


def test_a_damaged_compressed_array_is_refused() -> None:
    packed = pack_columns(np.arange(40.0).reshape(20, 2))
    damaged = ZPREFIX + base64.b64encode(b"not zlib at all").decode()
    assert same_bits(unpack_columns(packed), np.arange(40.0).reshape(20, 2))
    with pytest.raises(ValueError, match="packed array"):
        unpack_columns(damaged)
