"""A seq far ahead of the machine's last one is refused `too_far`, never applied (applied, it would make
every normal reading after it look old and be dropped in silence)."""

from __future__ import annotations

from apps.common.contracts import MAX_SEQ
from apps.common.profiles import TURBOFAN
from apps.equipment.domain import EquipmentState
from apps.equipment.sequence import SequenceTracker
from tests.unit.equipment.test_domain import make_reading


def test_the_tracker_refuses_a_jump_beyond_the_limit_from_the_seq_before_it() -> None:
    tr = SequenceTracker()
    tr.mark_applied(10)
    split = tr.split([make_reading(s) for s in (11, 111, 10_000, 10_100)], max_jump=100)
    assert [r.seq for r in split.fresh] == [11, 111]  # 111 is 100 ahead of 11, fresh in the same batch
    assert [r.seq for r in split.too_far] == [10_000, 10_100]


def test_a_new_machine_may_start_anywhere() -> None:
    split = SequenceTracker().split([make_reading(MAX_SEQ - 5)], max_jump=100)
    assert [r.seq for r in split.fresh] == [MAX_SEQ - 5] and split.too_far == []


def test_a_hostile_seq_does_not_silence_the_machine() -> None:
    state = EquipmentState.new("engine-7", TURBOFAN)
    state.apply_readings([make_reading(s) for s in range(5)], now=1.0, max_seq_jump=1000)
    result, _ = state.apply_readings([make_reading(2**52)], now=2.0, max_seq_jump=1000)
    assert (result.accepted, result.too_far) == (0, [2**52])
    assert state.tracker.last_seq == 4
    normal, _ = state.apply_readings([make_reading(5)], now=3.0, max_seq_jump=1000)
    assert (normal.accepted, normal.duplicates, normal.too_far) == (1, 0, [])
