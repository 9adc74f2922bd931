"""Transport-free core of the EquipmentActor: dedupe, windowing, features, health and alert hysteresis.

The actor in `apps/equipment/app.py` only loads an `EquipmentState` from actor state, calls these
functions, calls inference and publishes. Everything here is deterministic given its inputs (the
caller passes `now`), so it is unit-tested without a sidecar.

State dicts are plain JSON. Times are stored as epoch-second floats, never ISO strings, and arrays
as prefixed base64: the Dapr actor serializer turns date-like strings into `datetime` and strings such
as "30s" into `timedelta`, which would corrupt state on the round trip.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal

import numpy as np

from apps.common.contracts import (
    Alert,
    AlertEvent,
    AlertKind,
    FeatureVector,
    HealthSnapshot,
    Reading,
    SensorDeviation,
    Severity,
    Status,
)
from apps.common.features import decode_array, encode_array
from apps.common.profiles import AlertThresholds, EquipmentProfile, get_profile
from apps.equipment.backlog import PredictionBacklog
from apps.equipment.recent import RecentReadings
from apps.equipment.sequence import SequenceTracker

HISTORY_LIMIT: Final = 500  # predictions kept per machine for get_history(n)
TOP_SENSORS: Final = 3  # deviating sensors named in an alert
STATE_VERSION: Final = 1

Level = Literal["none", "warning", "critical"]
_RANK: Final[dict[str, int]] = {"none": 0, "warning": 1, "critical": 2}


def to_epoch(ts: datetime) -> float:
    return ts.timestamp()


def from_epoch(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """A change the hysteresis or silence detector decided on; the actor turns it into an `Alert`."""

    kind: AlertKind
    event: AlertEvent
    severity: Severity
    episode: int
    raised_at: float  # epoch seconds the episode opened
    # What the alert reports, taken at the prediction that decided it: a catch-up after an outage
    # decides several transitions at once, and the latest prediction and window would misreport them.
    # None: the state's current ones (silence, stale).
    predicted_rul: float | None = None
    top_sensors: tuple[SensorDeviation, ...] | None = None


@dataclass(slots=True)
class AlertHysteresis:
    """RUL-low alert state machine.

    Opens at `warning` after `consecutive` predictions <= warning_rul (at `critical` directly if those
    were also <= critical_rul), escalates warning -> critical after `consecutive` predictions <=
    critical_rul, and clears only after `consecutive` predictions > warning_rul + clear_margin. A
    critical alert does not step back down to warning: a machine that was once critical stays
    critical until it is clearly healthy (e.g. after maintenance), which is what stops flapping.
    """

    thresholds: AlertThresholds
    level: Level = "none"
    episode: int = 0  # count of episodes ever opened; the current one when level != "none"
    raised_at: float | None = None
    below_warning: int = 0  # consecutive predictions <= warning_rul
    below_critical: int = 0  # consecutive predictions <= critical_rul
    above_clear: int = 0  # consecutive predictions > clear_rul

    def update(self, rul: float, now: float) -> AlertTransition | None:
        t = self.thresholds
        self.below_warning = self.below_warning + 1 if rul <= t.warning_rul else 0
        self.below_critical = self.below_critical + 1 if rul <= t.critical_rul else 0
        self.above_clear = self.above_clear + 1 if rul > t.clear_rul else 0
        n = t.consecutive
        if self.level == "none":
            if self.below_warning >= n:
                self.level = "critical" if self.below_critical >= n else "warning"
                self.episode += 1
                self.raised_at = now
                return self._transition("open")
            return None
        if self.level == "warning" and self.below_critical >= n:
            self.level = "critical"
            return self._transition("escalate")
        if self.above_clear >= n:
            transition = self._transition("clear")
            self.level = "none"
            self.raised_at = None
            return transition
        return None

    def _transition(self, event: AlertEvent) -> AlertTransition:
        assert self.level != "none" and self.raised_at is not None
        return AlertTransition("rul_low", event, self.level, self.episode, self.raised_at)

    @property
    def open_severity(self) -> Severity | None:
        return None if self.level == "none" else self.level

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "episode": self.episode,
            "raised_at": self.raised_at,
            "counts": [self.below_warning, self.below_critical, self.above_clear],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], thresholds: AlertThresholds) -> AlertHysteresis:
        bw, bc, ac = (int(c) for c in data["counts"])
        level = data["level"]
        if level not in _RANK:
            raise ValueError(f"bad hysteresis level {level!r}")
        raised = data.get("raised_at")
        raised_at = None if raised is None else float(raised)
        return cls(thresholds, level, int(data["episode"]), raised_at, bw, bc, ac)


@dataclass(slots=True)
class TimedAlarm:
    """An alert for a condition that has lasted too long: no readings (`silent`), or predictions owed
    because inference is unreachable (`stale`). Opens once per episode, clears when the condition ends.

    Wall-clock based (the caller passes since when the condition holds and `now`), because the
    actor's reminder fires on the wall clock, not on the machine's own timestamps.
    """

    kind: AlertKind
    after_seconds: float
    active: bool = False
    episode: int = 0
    raised_at: float | None = None

    def check(self, since: float | None, now: float) -> AlertTransition | None:
        """Open an episode if the condition has held since `since` for long enough (None: it does not)."""
        if self.active or since is None:
            return None
        if now - since >= self.after_seconds:
            self.active = True
            self.episode += 1
            self.raised_at = now
            return AlertTransition(self.kind, "open", "warning", self.episode, now)
        return None

    def resolve(self) -> AlertTransition | None:
        """The condition ended: clear the open episode, if any."""
        if not self.active:
            return None
        assert self.raised_at is not None
        transition = AlertTransition(self.kind, "clear", "warning", self.episode, self.raised_at)
        self.active = False
        self.raised_at = None
        return transition

    def to_dict(self) -> dict[str, Any]:
        return {"active": self.active, "episode": self.episode, "raised_at": self.raised_at}

    @classmethod
    def from_dict(cls, kind: AlertKind, data: dict[str, Any] | None, after_seconds: float) -> TimedAlarm:
        if not data:
            return cls(kind, after_seconds)
        raised = data.get("raised_at")
        return cls(
            kind,
            after_seconds,
            bool(data.get("active", data.get("silent"))),  # "silent": state written before TimedAlarm
            int(data["episode"]),
            None if raised is None else float(raised),
        )


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


@dataclass(slots=True)
class EquipmentState:
    """Everything one EquipmentActor remembers, serialisable with `to_dict`/`from_dict`.

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

    def __post_init__(self) -> None:
        if self.hysteresis is None:
            self.hysteresis = AlertHysteresis(self.profile.thresholds)
        if self.silence is None:
            self.silence = TimedAlarm("silent", self.profile.silence_after_seconds)
        if self.stale is None:
            self.stale = TimedAlarm("stale", self.profile.stale_after_seconds)
        if self.backlog is None:
            self.backlog = PredictionBacklog(self.profile)
        self.checkpoints = deque(self.checkpoints, maxlen=self.profile.window + 1)

    @classmethod
    def new(cls, equipment_id: str, profile: EquipmentProfile) -> EquipmentState:
        return cls(equipment_id, profile, RecentReadings(profile.window, len(profile.informative_sensors)))

    # --- ingest -----------------------------------------------------------------------------------

    def apply_readings(
        self, readings: Sequence[Reading], now: float
    ) -> tuple[ApplyResult, list[AlertTransition]]:
        """Dedupe by seq, push fresh readings into the window, and owe a prediction for each full window.

        The owed windows are predicted through `owed_features`/`record_predictions` (in order, batched);
        until then they wait in the backlog. Returns the silence-clear transition too, if the machine
        had been flagged silent.
        """
        for r in readings:
            if r.equipment_id != self.equipment_id:
                raise ValueError(f"reading for {r.equipment_id!r} sent to actor {self.equipment_id!r}")
            if r.profile != self.profile.name:
                raise ValueError(
                    f"reading profile {r.profile!r} does not match the machine's {self.profile.name!r}"
                )
        split = self.tracker.split(readings)
        fresh = split.fresh
        self.duplicates += split.duplicates
        self.updated_at = now
        placed = [r for r in split.late if self._place_late(r)]
        too_late = [r.seq for r in split.late if r not in placed]
        transitions: list[AlertTransition] = []
        if not fresh and not placed:
            return ApplyResult(0, split.duplicates, too_late), transitions
        assert self.silence is not None and self.backlog is not None
        back = self.silence.resolve()
        if back is not None:
            transitions.append(back)
        self.last_reading_at = now
        if not fresh:
            return ApplyResult(len(placed), split.duplicates, too_late), transitions

        w = self.profile.window
        prev = self.recent.last(w - 1)
        new_rows = np.stack([self.profile.row_from_values(r.values) for r in fresh])
        combined = np.vstack([prev, new_rows])
        # Windows complete at combined rows w-1 and later, i.e. at fresh[lead:].
        lead = max(w - 1 - len(prev), 0)
        owed = [r.seq for r in fresh[lead:]]
        first_age = float(self.readings_applied + 1 + lead)
        self.backlog.add(combined, owed, first_age)

        for reading, row in zip(fresh, new_rows, strict=True):
            self.recent.append(reading.seq, row)
            self.tracker.mark_applied(reading.seq)
            self.readings_applied += 1
            if self.baseline is None and self.recent.window_full:
                self.baseline = self.recent.current_window()
        return ApplyResult(len(fresh) + len(placed), split.duplicates, too_late), transitions

    def _place_late(self, reading: Reading) -> bool:
        """Put a never-applied reading older than the last one in its place, if it falls inside the
        current window, and owe again every window it changes (those ending at or after it), so they
        are predicted anew and the hysteresis replays them from where it stood. False: too late.
        """
        assert self.backlog is not None and self.hysteresis is not None
        seq = reading.seq
        redo = [p for p in self.history if p.seq >= seq]
        owed_before = bool(len(self.backlog)) and self.backlog.seqs[0] < seq
        checkpoint = next((state for s, state in self.checkpoints if redo and s == redo[0].seq), None)
        if not self.recent.can_place(seq) or (redo and not owed_before and checkpoint is None):
            return False
        row = self.profile.row_from_values(reading.values)
        following = self.recent.insert(seq, row)
        self.tracker.mark_late(seq)
        self.readings_applied += 1
        if owed_before:  # everything from before `seq` on is still owed: just owe this window too
            self.backlog.insert(seq, row)
            return True
        if checkpoint is not None:
            self.hysteresis = AlertHysteresis.from_dict(checkpoint, self.profile.thresholds)
        self.history = deque((p for p in self.history if p.seq < seq), maxlen=HISTORY_LIMIT)
        self.checkpoints = deque(
            ((s, c) for s, c in self.checkpoints if s < seq), maxlen=self.profile.window + 1
        )
        # Windows end at each of the last `following` rows; only those with a full window are owed.
        w = self.profile.window
        owed = [
            s for i, s in enumerate(list(self.recent.seqs)[-following:]) if self._age_at(i, following) >= w
        ]
        skipped = self.backlog.skipped
        self.backlog = PredictionBacklog(self.profile, skipped=skipped)
        if owed:
            combined = self.recent.last(w - 1 + len(owed))
            self.backlog.add(combined, owed, float(self.readings_applied - len(owed) + 1))
        return True

    def _age_at(self, index: int, following: int) -> int:
        """Readings applied up to the `index`-th of the last `following` rows (the age feature there)."""
        return self.readings_applied - (following - 1 - index)

    def owed_features(self, limit: int) -> list[FeatureVector]:
        """Features of the oldest owed window positions (at most `limit`), to send to inference."""
        assert self.backlog is not None
        return self.backlog.features(self.equipment_id, limit)

    # --- predictions and alerts -------------------------------------------------------------------

    def record_predictions(
        self, points: Sequence[tuple[int, float]], model_version: int, now: float
    ) -> list[AlertTransition]:
        """Feed the predictions of the oldest owed positions, in order, through history and hysteresis."""
        assert self.hysteresis is not None and self.backlog is not None and self.stale is not None
        owed = self.backlog.seqs[: len(points)]
        if [int(seq) for seq, _ in points] != owed:
            raise ValueError(f"predictions for seqs {[s for s, _ in points]} do not match the owed {owed}")
        transitions: list[AlertTransition] = []
        rows, w = self.backlog.rows, self.profile.window
        for j, (seq, rul) in enumerate(points):
            self.history.append(HistoryPoint(int(seq), now, float(rul), int(model_version)))
            self.checkpoints.append((int(seq), self.hysteresis.to_dict()))
            t = self.hysteresis.update(float(rul), now)
            if t is not None:
                assert rows is not None  # owed positions have their rows: window j is rows[j : j + w]
                transitions.append(self._decided_by(t, float(rul), rows[j : j + w]))
        self.backlog.settle(len(points))
        if points:
            self.predicted_rul = float(points[-1][1])
            self.model_version = int(model_version)
        if not len(self.backlog):
            self.stale_since = None
            cleared = self.stale.resolve()
            if cleared is not None:
                transitions.append(cleared)
        self.updated_at = now
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
        self.updated_at = now

    @property
    def prediction_stale(self) -> bool:
        return self.stale_since is not None

    def check_alarms(self, now: float) -> list[AlertTransition]:
        """Called by the reminder (and on every call): silence, and predictions owed for too long."""
        assert self.silence is not None and self.stale is not None
        found = [self.silence.check(self.last_reading_at, now), self.stale.check(self.stale_since, now)]
        transitions = [t for t in found if t is not None]
        if transitions:
            self.updated_at = now
        return transitions

    def get_history(self, n: int) -> list[HistoryPoint]:
        return list(self.history)[-n:] if n > 0 else []

    def status(self) -> Status:
        assert self.hysteresis is not None and self.silence is not None
        if self.silence.active:
            return "silent"
        if self.hysteresis.level != "none":
            return self.hysteresis.level
        if self.prediction_stale:
            return "stale"
        if not self.recent.window_full or self.predicted_rul is None:
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
            open_alert_severity=self.hysteresis.open_severity,
        )

    def build_alert(self, transition: AlertTransition, now: float, k: int = TOP_SENSORS) -> Alert:
        """The wire `Alert` for a transition, with the sensors that moved most since the baseline (as of
        the prediction that decided the transition, when it carries them)."""
        top: list[SensorDeviation] = []
        if transition.top_sensors is not None:
            top = list(transition.top_sensors[:k])
        elif transition.kind == "rul_low" and self.baseline is not None and self.recent.window_full:
            sensors = self.profile.informative_sensors
            top = top_deviating_sensors(self.baseline, self.recent.current_window(), sensors, k)
        rul = self.predicted_rul if transition.predicted_rul is None else transition.predicted_rul
        if transition.kind == "rul_low":
            message = (
                f"{self.equipment_id}: predicted RUL {rul:.0f} cycles ({transition.severity})"
                if rul is not None
                else f"{self.equipment_id}: RUL low ({transition.severity})"
            )
        elif transition.kind == "stale":
            message = (
                f"{self.equipment_id}: inference has not answered for "
                f"{self.profile.stale_after_seconds:.0f} s; predictions owed"
            )
        else:
            message = f"{self.equipment_id}: no readings for {self.profile.silence_after_seconds:.0f} s"
        if transition.event == "clear":
            message = f"{message}; cleared"
        return Alert(
            id=Alert.make_id(self.equipment_id, transition.kind, transition.episode),
            equipment_id=self.equipment_id,
            kind=transition.kind,
            episode=transition.episode,
            severity=transition.severity,
            state="cleared" if transition.event == "clear" else "open",
            event=transition.event,
            predicted_rul=rul,
            model_version=self.model_version,
            top_sensors=top,
            message=message,
            raised_at=from_epoch(transition.raised_at),
            updated_at=from_epoch(now),
        )

    def remember_alert(self, alert: Alert) -> None:
        """Keep the last event of each alert kind: the actor, not a message, is the source of truth."""
        self.last_alerts[alert.kind] = alert.model_dump_json()

    def alerts_to_reannounce(self) -> list[Alert]:
        """The last event of every alert kind, to publish again (alerting dedupes by id and time)."""
        return [Alert.model_validate_json(text) for _, text in sorted(self.last_alerts.items())]

    # --- persistence ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        assert self.hysteresis is not None and self.silence is not None
        assert self.stale is not None and self.backlog is not None
        return {
            "v": STATE_VERSION,
            "profile": self.profile.name,
            "window": self.recent.to_dict(),
            "tracker": self.tracker.to_dict(),
            "hysteresis": self.hysteresis.to_dict(),
            "silence": self.silence.to_dict(),
            "stale": self.stale.to_dict(),
            "backlog": self.backlog.to_dict(),
            "stale_since": self.stale_since,
            "last_alerts": self.last_alerts,
            "baseline": None if self.baseline is None else encode_array(self.baseline),
            "history": [[p.seq, p.at, p.predicted_rul, p.model_version] for p in self.history],
            "checkpoints": [[seq, state] for seq, state in self.checkpoints],
            "readings_applied": self.readings_applied,
            "duplicates": self.duplicates,
            "predicted_rul": self.predicted_rul,
            "model_version": self.model_version,
            "last_reading_at": self.last_reading_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_dict(
        cls, equipment_id: str, data: dict[str, Any], profiles: dict[str, EquipmentProfile] | None = None
    ) -> EquipmentState:
        if data.get("v") != STATE_VERSION:
            raise ValueError(f"unsupported equipment state version {data.get('v')!r}")
        profile = get_profile(data["profile"]) if profiles is None else get_profile(data["profile"], profiles)
        tracker = SequenceTracker.from_dict(data.get("tracker") or {"last_seq": data["last_seq"]})
        recent = RecentReadings.from_dict(data["window"], profile.window, tracker.last_seq)
        baseline = (
            None
            if data.get("baseline") is None
            else decode_array(data["baseline"], (-1, len(profile.informative_sensors)))
        )
        history: deque[HistoryPoint] = deque(
            (HistoryPoint(int(s), float(a), float(r), int(m)) for s, a, r, m in data.get("history", [])),
            maxlen=HISTORY_LIMIT,
        )

        def opt_float(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        mv = data.get("model_version")
        return cls(
            equipment_id=equipment_id,
            profile=profile,
            recent=recent,
            tracker=tracker,
            hysteresis=AlertHysteresis.from_dict(data["hysteresis"], profile.thresholds),
            silence=TimedAlarm.from_dict("silent", data["silence"], profile.silence_after_seconds),
            stale=TimedAlarm.from_dict("stale", data.get("stale"), profile.stale_after_seconds),
            backlog=PredictionBacklog.from_dict(data.get("backlog"), profile),
            stale_since=opt_float("stale_since"),
            last_alerts={str(k): str(v) for k, v in (data.get("last_alerts") or {}).items()},
            baseline=baseline,
            history=history,
            checkpoints=deque((int(seq), dict(state)) for seq, state in data.get("checkpoints") or []),
            readings_applied=int(data["readings_applied"]),
            duplicates=int(data["duplicates"]),
            predicted_rul=opt_float("predicted_rul"),
            model_version=None if mv is None else int(mv),
            last_reading_at=opt_float("last_reading_at"),
            updated_at=opt_float("updated_at"),
        )
