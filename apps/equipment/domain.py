"""Transport-free core of the EquipmentActor: dedupe, windowing, features, health and alert transitions
(the alert state machines themselves are in alarms.py, a reading that comes after newer ones in
late.py, life events and an operator's retire or resolve in lifecycle.py, the wire alerts made of
transitions in announce.py).

The actor in `apps/equipment/app.py` only loads an `EquipmentState` from actor state, calls these
functions, calls inference and publishes. Everything here is deterministic given its inputs (the
caller passes `now`), so it is unit-tested without a sidecar.

State dicts are plain JSON. Times are stored as epoch-second floats, never ISO strings, and arrays
as prefixed base64: the Dapr actor serializer turns date-like strings into `datetime` and strings such
as "30s" into `timedelta`, which would corrupt state on the round trip.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final

import numpy as np

from apps.common.contracts import (
    EventKind,
    FeatureVector,
    HealthSnapshot,
    Reading,
    SensorDeviation,
    Status,
)
from apps.common.features import EARLY_READINGS, FeatureSpec, reading_columns
from apps.common.profiles import AnomalyThresholds, EquipmentProfile
from apps.equipment.alarms import AlertHysteresis, AlertTransition, TimedAlarm
from apps.equipment.backlog import PredictionBacklog
from apps.equipment.late import place_late
from apps.equipment.recent import RecentReadings
from apps.equipment.sequence import DEFAULT_MAX_SEQ_JUMP, SequenceTracker

HISTORY_LIMIT: Final = 500  # predictions kept per machine for get_history(n)
TOP_SENSORS: Final = 3  # deviating sensors named in an alert
STATE_VERSION: Final = 1


def to_epoch(ts: datetime) -> float:
    return ts.timestamp()


def from_epoch(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def top_deviating_sensors(
    baseline_window: np.ndarray, current_window: np.ndarray, sensors: Sequence[str], k: int = 3
) -> list[SensorDeviation]:
    """The k sensors whose current mean is furthest from the machine's own baseline, in baseline stds.

    Comparing against this machine's first full window (not a fleet average) removes the per-engine
    manufacturing offset that C-MAPSS deliberately includes. A sensor flat in the baseline gets a
    small std floor so its z-score stays finite (and JSON-safe) yet still ranks high if it moved.
    """
    base = np.asarray(baseline_window, dtype=np.float64)
    cur = np.asarray(current_window, dtype=np.float64)
    if base.ndim != 2 or cur.ndim != 2 or base.shape[1] != cur.shape[1] or base.shape[1] != len(sensors):
        raise ValueError("baseline and current windows must be [rows, len(sensors)]")
    base_mean = base.mean(axis=0)
    cur_mean = cur.mean(axis=0)
    floor = np.maximum(1e-6 * np.maximum(np.abs(base_mean), 1.0), 1e-12)
    z = (cur_mean - base_mean) / np.maximum(base.std(axis=0), floor)
    order = sorted(range(len(sensors)), key=lambda i: (-abs(float(z[i])), i))[: max(k, 0)]
    return [
        SensorDeviation(
            sensor=sensors[i],
            z_score=round(float(z[i]), 6),
            baseline_mean=float(base_mean[i]),
            current_mean=float(cur_mean[i]),
        )
        for i in order
    ]


@dataclass(frozen=True, slots=True)
class HistoryPoint:
    seq: int
    at: float  # epoch seconds the prediction was recorded
    predicted_rul: float
    model_version: int


@dataclass(frozen=True, slots=True)
class ApplyResult:
    accepted: int
    duplicates: int
    too_late: list[int]  # seqs never applied, refused because later seqs were applied already
    too_far: list[int] = field(default_factory=list)  # seqs refused: too far ahead of the last one


@dataclass(slots=True)
class EquipmentState:
    """Everything one EquipmentActor remembers, serialisable with codec.py's `encode_state`/`decode_state`.

    `equipment_id` is deliberately not stored in the dict: the actor knows its own id, and a free-form
    id (say "2024-01-01" or "30s") is exactly what the Dapr serializer would mangle.
    """

    equipment_id: str
    profile: EquipmentProfile
    recent: RecentReadings
    tracker: SequenceTracker = field(default_factory=SequenceTracker)
    hysteresis: AlertHysteresis | None = None
    silence: TimedAlarm | None = None
    stale: TimedAlarm | None = None
    backlog: PredictionBacklog | None = None
    stale_since: float | None = None  # epoch seconds inference first failed to answer for owed windows
    # The last alert event published per alert kind, as its wire JSON text (a string, so the Dapr
    # serializer never sees its ISO times): re-announced so alerting converges on the actor's truth.
    last_alerts: dict[str, str] = field(default_factory=dict)
    baseline: np.ndarray | None = None  # the machine's first full window, for top_deviating_sensors
    # The life's first reading rows (at most EARLY_READINGS), for a health index's from_start feature.
    head: np.ndarray | None = None
    history: deque[HistoryPoint] = field(default_factory=lambda: deque(maxlen=HISTORY_LIMIT))
    # The hysteresis as it stood before each of the last predictions (seq, state): a late reading redoes
    # the predictions from its seq on, and the hysteresis must replay them from where it stood.
    checkpoints: deque[tuple[int, dict[str, Any]]] = field(default_factory=deque)
    readings_applied: int = 0
    duplicates: int = 0
    predicted_rul: float | None = None
    model_version: int | None = None
    last_reading_at: float | None = None  # epoch seconds the last reading was received
    updated_at: float | None = None
    # Counts the changes of this state (see `touch`): the snapshot's `revision`, by which alerting
    # orders snapshots instead of by a clock.
    revision: int = 0
    # An operator retired the machine (epoch seconds): no alarm is checked until it sends again.
    retired_at: float | None = None
    # Lives (see `start_life`): the current one's number (0 before any event), the seq of the event
    # that started it (readings at or below it belong to earlier lives), the event's kind, and how
    # many readings it has applied (the age the features count, as training counts it from the
    # life's start). `down_since`: a failure ended the life and no reading came since.
    life: int = 0
    life_start_seq: int | None = None
    life_started_by: EventKind | None = None
    life_readings: int = 0
    down_since: float | None = None

    def __post_init__(self) -> None:
        reopen = self.profile.reopen_within_seconds
        if self.hysteresis is None:
            self.hysteresis = AlertHysteresis(self.profile.thresholds, reopen)
        if self.silence is None:
            self.silence = TimedAlarm("silent", self.profile.silence_after_seconds, reopen)
        if self.stale is None:
            self.stale = TimedAlarm("stale", self.profile.stale_after_seconds, reopen)
        if self.backlog is None:
            self.backlog = PredictionBacklog(self.profile)
        self.checkpoints = deque(self.checkpoints, maxlen=self.profile.window + 1)
        if self.history.maxlen != HISTORY_LIMIT:  # late.py and lifecycle.py keep the bound it has
            self.history = deque(self.history, maxlen=HISTORY_LIMIT)
        if self.head is None:
            self.refresh_head()

    @classmethod
    def new(cls, equipment_id: str, profile: EquipmentProfile) -> EquipmentState:
        return cls(equipment_id, profile, RecentReadings(profile.window, len(reading_columns(profile))))

    # --- ingest -----------------------------------------------------------------------------------

    def apply_readings(
        self, readings: Sequence[Reading], now: float, max_seq_jump: int = DEFAULT_MAX_SEQ_JUMP
    ) -> tuple[ApplyResult, list[AlertTransition]]:
        """Dedupe by seq, push fresh readings into the window, and owe a prediction for each full window.

        The owed windows are predicted through `owed_features`/`record_predictions` (in order, batched);
        until then they wait in the backlog. Returns the silence-clear transition too, if the machine
        had been flagged silent. A retired machine that sends again is watched again. A seq more than
        `max_seq_jump` ahead of the last one is refused (`too_far`), never applied.
        """
        for r in readings:
            if r.equipment_id != self.equipment_id:
                raise ValueError(f"reading for {r.equipment_id!r} sent to actor {self.equipment_id!r}")
            if r.profile != self.profile.name:
                raise ValueError(
                    f"reading profile {r.profile!r} does not match the machine's {self.profile.name!r}"
                )
        old_life: list[int] = []
        if self.life_start_seq is not None:
            # A reading at or below the event's seq belongs to the life that ended (training cuts the
            # archive there too): never applied to this one. A resend of an applied one is a duplicate.
            start = self.life_start_seq
            old_life = [r.seq for r in readings if r.seq <= start and not self.tracker.was_applied(r.seq)]
            readings = [r for r in readings if r.seq > start or self.tracker.was_applied(r.seq)]
        split = self.tracker.split(readings, max_seq_jump)
        fresh = split.fresh
        too_far = [r.seq for r in split.too_far]
        self.duplicates += split.duplicates
        self.touch(now)
        placed = [r for r in split.late if place_late(self, r)]
        too_late = sorted([*old_life, *(r.seq for r in split.late if r not in placed)])
        transitions: list[AlertTransition] = []
        if not fresh and not placed:
            return ApplyResult(0, split.duplicates, too_late, too_far), transitions
        assert self.silence is not None and self.backlog is not None
        back = self.silence.condition_ended(now)
        if back is not None:
            transitions.append(back)
        self.last_reading_at = now
        self.retired_at = None
        self.down_since = None  # a machine that sends readings is running again
        if not fresh:
            return ApplyResult(len(placed), split.duplicates, too_late, too_far), transitions

        w = self.profile.window
        prev = self.recent.last(w - 1)
        # One array for the call's rows (as profile.row_from_values makes each: one per reading cost
        # an array and the channel tuple apiece)
        columns = self.profile.required_channels
        new_rows = np.array([[r.values[c] for c in columns] for r in fresh], dtype=np.float64)
        combined = np.vstack([prev, new_rows])
        # Every reading owes a prediction, the first ones with their window padded (as in training).
        owed = [r.seq for r in fresh]
        times = [to_epoch(r.timestamp) for r in fresh]
        self.backlog.add(combined, owed, times, float(self.life_readings + 1))

        for reading, row in zip(fresh, new_rows, strict=True):
            self.recent.append(reading.seq, row, to_epoch(reading.timestamp))
            self.tracker.mark_applied(reading.seq)
            self.readings_applied += 1
            self.life_readings += 1
            if self.baseline is None and self.recent.window_full:
                self.baseline = self.sensors(self.recent.current_window())
            if self.head is not None and len(self.head) < EARLY_READINGS:  # fresh: the newest so far
                self.head = np.vstack([self.head, row])
        return ApplyResult(len(fresh) + len(placed), split.duplicates, too_late, too_far), transitions

    def refresh_head(self) -> None:
        """The life's first readings, read from the recent ones while those still hold the whole life
        (a late reading may still land among them), then kept as they are. A life whose first readings
        are gone already (state from before the head was kept, an event recorded very late) gets the
        oldest ones still held: its from_start then starts from there."""
        if self.head is None or self.life_readings <= len(self.recent):
            self.head = self.recent.last(len(self.recent))[:EARLY_READINGS].copy()

    def sensors(self, rows: np.ndarray) -> np.ndarray:
        """The informative-sensor columns of reading rows (the operating settings follow them)."""
        return rows[:, : len(self.profile.informative_sensors)]

    @property
    def predictions_owed(self) -> int:
        assert self.backlog is not None
        return len(self.backlog)

    def owed_features(self, limit: int, spec: FeatureSpec | None = None) -> list[FeatureVector]:
        """Features of the oldest owed window positions (at most `limit`), computed as `spec` (the
        served model's) says, to send to inference; no spec: the profile's window, raw sensors."""
        assert self.backlog is not None
        return self.backlog.features(
            self.equipment_id, limit, spec or FeatureSpec(window=self.profile.window), self.head
        )

    # --- predictions and alerts -------------------------------------------------------------------

    def record_predictions(
        self,
        points: Sequence[tuple[int, float]],
        model_version: int,
        now: float,
        learned: Mapping[str, float] | None = None,
    ) -> list[AlertTransition]:
        """Feed the predictions of the oldest owed positions, in order, through history and hysteresis:
        reading by reading, so each transition carries the seq, timestamp and prediction of its own
        reading, whatever else the call covered. `learned`: the alert thresholds of the model card
        that made them (an anomaly model's score thresholds; other kinds' are the profile's)."""
        assert self.hysteresis is not None and self.backlog is not None and self.stale is not None
        if isinstance(self.profile.thresholds, AnomalyThresholds):
            self.hysteresis.thresholds = self.profile.thresholds.learned(learned)
        owed = self.backlog.seqs[: len(points)]
        if [int(seq) for seq, _ in points] != owed:
            raise ValueError(f"predictions for seqs {[s for s, _ in points]} do not match the owed {owed}")
        transitions: list[AlertTransition] = []
        rows, times, w = self.backlog.rows, self.backlog.times, self.profile.window
        for j, (seq, rul) in enumerate(points):
            # to the millisecond: the packed state keeps such a time in a few bytes (packing.py)
            self.history.append(HistoryPoint(int(seq), round(now, 3), float(rul), int(model_version)))
            self.checkpoints.append((int(seq), self.hysteresis.to_dict()))
            t = self.hysteresis.update(float(rul), int(seq), times[j])
            if t is not None:
                assert rows is not None  # owed positions have their rows: window j is rows[j : j + w]
                transitions.append(self._decided_by(t, float(rul), self.sensors(rows[j : j + w])))
        self.backlog.settle(len(points))
        if points:
            self.predicted_rul = float(points[-1][1])
            self.model_version = int(model_version)
        if not len(self.backlog):
            self.stale_since = None
            cleared = self.stale.condition_ended(now)
            if cleared is not None:
                transitions.append(cleared)
        self.touch(now)
        return transitions

    def _decided_by(self, transition: AlertTransition, rul: float, window: np.ndarray) -> AlertTransition:
        """The transition with the RUL and the deviating sensors of the window whose prediction made it."""
        top: tuple[SensorDeviation, ...] = ()
        if self.baseline is not None:
            sensors = self.profile.informative_sensors
            top = tuple(top_deviating_sensors(self.baseline, window, sensors, TOP_SENSORS))
        return replace(transition, predicted_rul=rul, top_sensors=top)

    def mark_prediction_stale(self, now: float) -> None:
        """Inference did not answer: the owed positions stay owed, and the machine reports `stale`."""
        if self.stale_since is None:
            self.stale_since = now
        self.touch(now)

    @property
    def prediction_stale(self) -> bool:
        return self.stale_since is not None

    def check_alarms(self, now: float, listening_since: float | None = None) -> list[AlertTransition]:
        """Called by the reminder (and on every call): silence, and predictions owed for too long.

        Silence is measured from when the platform could last hear the machine: its last reading, or
        `listening_since` (when this actor host started) if that is later. Machines quiet while the
        platform was down then get the silence threshold after the start to report in, instead of all
        turning silent at the first check. A retired machine is not watched.
        """
        assert self.silence is not None and self.stale is not None
        if self.retired_at is not None:
            return []
        heard = self.last_reading_at
        if heard is not None and listening_since is not None:
            heard = max(heard, listening_since)
        if self.down_since is not None:
            heard = None  # failed and known to be down: its silence is no news (a reading ends it)
        found = [self.silence.check(heard, now), self.stale.check(self.stale_since, now)]
        transitions = [t for t in found if t is not None]
        if transitions:
            self.touch(now)
        return transitions

    def touch(self, now: float) -> None:
        """The state changed at `now`: a snapshot of it is newer than any before (see `revision`)."""
        self.updated_at = now
        self.revision += 1

    def get_history(self, n: int) -> list[HistoryPoint]:
        return list(self.history)[-n:] if n > 0 else []

    def status(self) -> Status:
        assert self.hysteresis is not None and self.silence is not None
        if self.down_since is not None:
            return "down"
        if self.silence.active:
            return "silent"
        if self.hysteresis.level != "none":
            return self.hysteresis.level
        if self.prediction_stale:
            return "stale"
        if self.predicted_rul is None:
            return "warming_up"
        return "ok"

    def snapshot(self, now: float) -> HealthSnapshot:
        assert self.hysteresis is not None and self.backlog is not None
        return HealthSnapshot(
            equipment_id=self.equipment_id,
            profile=self.profile.name,
            last_seq=self.tracker.last_seq,
            readings_applied=self.readings_applied,
            duplicates=self.duplicates,
            predicted_rul=self.predicted_rul,
            prediction_stale=self.prediction_stale,
            predictions_owed=len(self.backlog),
            predictions_skipped=self.backlog.skipped,
            model_version=self.model_version,
            status=self.status(),
            last_reading_at=None if self.last_reading_at is None else from_epoch(self.last_reading_at),
            updated_at=from_epoch(self.updated_at if self.updated_at is not None else now),
            revision=self.revision,
            open_alert_severity=self.hysteresis.open_severity,
            life=self.life,
            life_readings=self.life_readings,
        )
