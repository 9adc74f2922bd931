"""An operator's and a machine's life events, applied to one machine's state (pure, no transport).

A failure, maintenance or replacement event starts the machine's next life; an operator retires a
machine (it is not watched until it sends again) or resolves one of its alert episodes. Each rule
changes the `EquipmentState` the actor loaded; a new life returns the alert transitions it caused.
"""

from __future__ import annotations

from collections import deque

from apps.common.contracts import AlertKind, EventKind
from apps.equipment.alarms import AlertTransition
from apps.equipment.backlog import PredictionBacklog
from apps.equipment.domain import HISTORY_LIMIT, EquipmentState
from apps.equipment.recent import RecentReadings


def start_life(
    state: EquipmentState, kind: EventKind, seq: int, note: str, now: float
) -> list[AlertTransition] | None:
    """A failure, maintenance or replacement event after reading `seq`: the machine's next life
    starts. None when this life already started at or after `seq` (the same event again, or an
    older one recorded late): nothing changes, so applying an event twice is harmless.

    Readings up to `seq` belong to the life that ended, those after it to the new one, as training
    cuts the archive (apps/training/history.py). The open episodes of every alert kind end as
    `resolve` with the event as the reason; the hysteresis counts start over. The window, the
    baseline, the owed predictions and the age start again from the life's first reading, so the
    features of its windows are those training computes for it (ages 1, 2, ... since the life
    began, the first windows padded with its first reading). Readings after `seq` already applied
    (an event recorded late) stay as the new life's first ones and are predicted again; older
    owed predictions are dropped (that life is over). A failure leaves the machine `down` until
    a reading comes.
    """
    assert state.hysteresis is not None and state.silence is not None and state.stale is not None
    assert state.backlog is not None
    if state.life_start_seq is not None and seq <= state.life_start_seq:
        return None
    reason = f"{kind} after seq {seq}" + (f": {note}" if note else "")
    found = [state.hysteresis.new_life(reason, now), state.silence.new_life(reason, now)]
    found.append(state.stale.new_life(reason, now))
    transitions = [t for t in found if t is not None]
    w = state.profile.window
    rows = state.recent.last(len(state.recent))
    keep = [i for i, s in enumerate(state.recent.seqs) if s > seq]
    recent = RecentReadings(w, state.recent.n_columns)
    for i in keep:
        recent.append(state.recent.seqs[i], rows[i], state.recent.times[i])
    state.recent = recent
    state.life_readings = state.tracker.applied_after(seq)
    state.baseline = state.sensors(recent.last(len(recent))[:w]) if recent.window_full else None
    state.head = None
    state.refresh_head()
    state.checkpoints.clear()
    state.backlog = PredictionBacklog(state.profile, skipped=state.backlog.skipped)
    owed = list(zip(recent.seqs, recent.times, strict=True))[-w:]
    # The predictions about to be made again replace the old life's of the same readings.
    redo = owed[0][0] if owed else None
    state.history = deque((p for p in state.history if redo is None or p.seq < redo), maxlen=HISTORY_LIMIT)
    if owed:
        combined = recent.last(w - 1 + len(owed))
        seqs, times = [s for s, _ in owed], [t for _, t in owed]
        state.backlog.add(combined, seqs, times, float(state.life_readings - len(owed) + 1))
    state.stale_since = None
    state.predicted_rul = None
    state.life += 1
    state.life_start_seq = seq
    state.life_started_by = kind
    state.down_since = now if kind == "failure" and not keep else None
    state.touch(now)
    return transitions


def retire(state: EquipmentState, now: float) -> None:
    """An operator retired the machine: end its episodes and stop watching it (until it sends again)."""
    assert state.hysteresis is not None and state.silence is not None and state.stale is not None
    state.hysteresis.end_episode(state.hysteresis.episode)
    state.checkpoints.clear()
    for alarm in (state.silence, state.stale):
        alarm.end_episode(alarm.episode, now)
    state.last_alerts.clear()
    state.retired_at = now
    state.touch(now)


def end_alert(state: EquipmentState, kind: AlertKind, episode: int, now: float) -> bool:
    """An operator resolved this machine's `kind` alert `episode` (alerting asks before it records
    the resolve): end the episode, so a condition that persists opens a new one. False when that
    episode is not the machine's latest of its kind (already replaced: nothing to end)."""
    assert state.hysteresis is not None and state.silence is not None and state.stale is not None
    if kind == "rul_low":
        ended = state.hysteresis.end_episode(episode)
        if ended:
            # A late reading must not replay the hysteresis from before the resolve and revive it.
            state.checkpoints.clear()
    else:
        ended = (state.silence if kind == "silent" else state.stale).end_episode(episode, now)
    if ended:
        state.last_alerts.pop(kind, None)  # nothing of that episode to re-announce any more
        state.touch(now)
    return ended
