"""A reading that arrives after newer ones of its machine (pure, no transport): put in its place in
the window, with every prediction it changes owed again and the hysteresis replayed from where it
stood before them."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from apps.common.contracts import Reading
from apps.equipment.alarms import AlertHysteresis
from apps.equipment.backlog import PredictionBacklog

if TYPE_CHECKING:
    from apps.equipment.domain import EquipmentState


def place_late(state: EquipmentState, reading: Reading) -> bool:
    """Put a never-applied reading older than the last one in its place, if it falls inside the
    current window, and owe again every window it changes (those ending at or after it), so they
    are predicted anew and the hysteresis replays them from where it stood. False: too late.
    """
    assert state.backlog is not None and state.hysteresis is not None
    seq = reading.seq
    redo = [p for p in state.history if p.seq >= seq]
    owed_before = bool(len(state.backlog)) and state.backlog.seqs[0] < seq
    checkpoint = next((saved for s, saved in state.checkpoints if redo and s == redo[0].seq), None)
    if not state.recent.can_place(seq) or (redo and not owed_before and checkpoint is None):
        return False
    row = state.profile.row_from_values(reading.values)
    at = reading.timestamp.timestamp()
    following = state.recent.insert(seq, row, at)
    state.tracker.mark_late(seq)
    state.readings_applied += 1
    state.life_readings += 1
    state.refresh_head()
    if owed_before:  # everything from before `seq` on is still owed: just owe this window too
        state.backlog.insert(seq, row, at)
        return True
    if checkpoint is not None:
        state.hysteresis = AlertHysteresis.from_dict(  # the thresholds in use (an anomaly's learnt)
            checkpoint, state.hysteresis.thresholds, state.profile.reopen_within_seconds
        )
    state.history = deque((p for p in state.history if p.seq < seq), maxlen=state.history.maxlen)
    state.checkpoints = deque(
        ((s, c) for s, c in state.checkpoints if s < seq), maxlen=state.profile.window + 1
    )
    # Windows end at each of the last `following` rows: all are owed (young ones padded).
    w = state.profile.window
    owed = list(zip(state.recent.seqs, state.recent.times, strict=True))[-following:]
    skipped = state.backlog.skipped
    state.backlog = PredictionBacklog(state.profile, skipped=skipped)
    if owed:
        combined = state.recent.last(w - 1 + len(owed))
        seqs, times = [s for s, _ in owed], [t for _, t in owed]
        state.backlog.add(combined, seqs, times, float(state.life_readings - len(owed) + 1))
    return True
