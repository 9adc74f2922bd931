"""The life's first readings the actor keeps (`EquipmentState.head`) for the health index's from_start:
late readings among them, a state round trip, a new life, and state written before the head was kept."""

from __future__ import annotations

import functools
import json

import numpy as np

from apps.common import cmapss
from apps.common.features import EARLY_READINGS, FeatureSpec
from apps.common.profiles import TURBOFAN
from apps.equipment.codec import decode_state, encode_state
from apps.equipment.domain import EquipmentState
from apps.equipment.lifecycle import start_life
from apps.training.quality import fit_spec, reading_rows, unit_features
from tests.unit.equipment.test_domain import engine_readings, predict_owed


@functools.cache
def _spec() -> FeatureSpec:
    train = cmapss.load_train()
    spec = fit_spec({u: train[u] for u in range(1, 21)}, TURBOFAN)
    assert spec.health_index is not None and spec.health_index.early_readings == EARLY_READINGS
    return spec


def _round_trip(state: EquipmentState) -> EquipmentState:
    return decode_state(state.equipment_id, json.loads(json.dumps(encode_state(state))))


def test_late_readings_among_the_first_ones_give_the_features_of_the_life_in_order() -> None:
    """Seqs 6-10 arrive after 11-30 were applied and predicted: the head is the life's first 20 in seq
    order, and every prediction redone equals training's features of the whole life."""
    engine = cmapss.load_train()[7]
    readings = engine_readings(engine)[:90]
    state = EquipmentState.new("engine-7", TURBOFAN)
    by_seq: dict[int, list[float]] = {}
    for batch in (readings[:5], readings[10:30], readings[5:10], readings[30:]):
        state.apply_readings(batch, now=1.0)
        for v in predict_owed(state, now=1.0, spec=_spec()):
            by_seq[v.window_end_seq] = v.values  # a redone position replaces its earlier prediction
        state = _round_trip(state)
    np.testing.assert_array_equal(state.head, reading_rows(engine, TURBOFAN)[:EARLY_READINGS])
    expected = unit_features(engine[:90], TURBOFAN, _spec())
    assert np.array_equal(np.array([by_seq[s] for s in range(1, 91)]), expected)


def test_a_new_life_keeps_its_own_first_readings() -> None:
    engines = cmapss.load_train()
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings(engine_readings(engines[7][:150]), now=1.0)
    predict_owed(state, now=1.0, spec=_spec())
    first_life = state.head
    start_life(state, "maintenance", 150, "", now=2.0)
    assert state.head is not None and len(state.head) == 0
    second = engines[8].copy()
    second[:, 1] = np.arange(151, 151 + len(second))
    state.apply_readings(engine_readings(second[:130]), now=3.0)
    state = _round_trip(state)
    state.apply_readings(engine_readings(second[130:]), now=4.0)
    np.testing.assert_array_equal(state.head, reading_rows(engines[8], TURBOFAN)[:EARLY_READINGS])
    assert not np.array_equal(state.head, first_life)
    vectors = predict_owed(state, now=5.0, spec=_spec())
    life = engines[8].copy()
    life[:, 1] = np.arange(1, len(life) + 1)
    assert np.array_equal(np.array([v.values for v in vectors]), unit_features(life, TURBOFAN, _spec()))


def test_state_from_before_the_head_takes_the_oldest_readings_held() -> None:
    """A machine 150 readings into its life whose state has no head: its from_start starts from the
    oldest reading still held, and a model without from_start is served exactly as before."""
    engine = cmapss.load_train()[7]
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings(engine_readings(engine[:150]), now=1.0)
    predict_owed(state, now=1.0, spec=_spec())
    stored = encode_state(state)
    del stored["head"]
    old = decode_state("engine-7", json.loads(json.dumps(stored)))
    held = len(old.recent)
    np.testing.assert_array_equal(
        old.head, reading_rows(engine, TURBOFAN)[150 - held : 150 - held + EARLY_READINGS]
    )
    old.apply_readings(engine_readings(engine[150:155]), now=2.0)
    assert len(predict_owed(old, now=2.0, spec=_spec())) == 5
    assert old.head is not None and np.array_equal(
        old.head, reading_rows(engine, TURBOFAN)[150 - held :][:20]
    )
