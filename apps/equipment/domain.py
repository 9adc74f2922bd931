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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
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
from apps.common.features import (
    RollingWindow,
    decode_array,
    encode_array,
    feature_names,
    offline_features,
    online_features,
)
from apps.common.profiles import AlertThresholds, EquipmentProfile, get_profile

HISTORY_LIMIT: Final = 500  # predictions kept per machine for get_history(n)
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
class SequenceTracker:
    """Per-equipment dedupe by sequence number.

    Readings are applied in seq order; anything with seq <= the last applied one was already applied
    (a redelivery or client retry) or arrived too late to be placed in the window, so it is dropped
    and counted. Gaps (a jump in seq) are accepted: a lost reading must not stall the machine.
    """

    last_seq: int = -1

    def is_new(self, seq: int) -> bool:
        return seq > self.last_seq

    def split(self, readings: Iterable[Reading]) -> tuple[list[Reading], int]:
        """(fresh readings in seq order, number of duplicates); does not advance `last_seq`."""
        fresh: list[Reading] = []
        duplicates = 0
        last = self.last_seq
        for reading in sorted(readings, key=lambda r: r.seq):
            if reading.seq > last:
                fresh.append(reading)
                last = reading.seq
            else:
                duplicates += 1
        return fresh, duplicates

    def mark_applied(self, seq: int) -> None:
        if seq <= self.last_seq:
            raise ValueError(f"seq {seq} is not after last applied seq {self.last_seq}")
        self.last_seq = seq


@dataclass(slots=True)
class SilenceDetector:
    """Flags a machine that stopped reporting; clears when data returns.

    Wall-clock based (the caller passes when the last reading was received and `now`), because the
    silence reminder fires on the wall clock, not on the machine's own timestamps.
    """

    silence_after_seconds: float
    silent: bool = False
    episode: int = 0
    raised_at: float | None = None

    def check(self, last_seen: float | None, now: float) -> AlertTransition | None:
        """Called by the reminder: open a silence episode if nothing arrived for too long."""
        if self.silent or last_seen is None:  # never-seen machines are warming up, not silent
            return None
        if now - last_seen >= self.silence_after_seconds:
            self.silent = True
            self.episode += 1
            self.raised_at = now
            return AlertTransition("silent", "open", "warning", self.episode, now)
        return None

    def on_reading(self) -> AlertTransition | None:
        """Called when readings arrive: a silent machine is back."""
        if not self.silent:
            return None
        assert self.raised_at is not None
        transition = AlertTransition("silent", "clear", "warning", self.episode, self.raised_at)
        self.silent = False
        self.raised_at = None
        return transition

    def to_dict(self) -> dict[str, Any]:
        return {"silent": self.silent, "episode": self.episode, "raised_at": self.raised_at}

    @classmethod
    def from_dict(cls, data: dict[str, Any], silence_after_seconds: float) -> SilenceDetector:
        raised = data.get("raised_at")
        return cls(
            silence_after_seconds,
            bool(data["silent"]),
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
    features: list[FeatureVector]  # one per accepted reading that completed a full window


@dataclass(slots=True)
class EquipmentState:
    """Everything one EquipmentActor remembers, serialisable with `to_dict`/`from_dict`.

    `equipment_id` is deliberately not stored in the dict: the actor knows its own id, and a free-form
    id (say "2024-01-01" or "30s") is exactly what the Dapr serializer would mangle.
    """

    equipment_id: str
    profile: EquipmentProfile
    window: RollingWindow
    tracker: SequenceTracker = field(default_factory=SequenceTracker)
    hysteresis: AlertHysteresis | None = None
    silence: SilenceDetector | None = None
    baseline: np.ndarray | None = None  # the machine's first full window, for top_deviating_sensors
    history: deque[HistoryPoint] = field(default_factory=lambda: deque(maxlen=HISTORY_LIMIT))
    readings_applied: int = 0
    duplicates: int = 0
    predicted_rul: float | None = None
    model_version: int | None = None
    prediction_stale: bool = False
    last_reading_at: float | None = None  # epoch seconds the last reading was received
    updated_at: float | None = None

    def __post_init__(self) -> None:
        if self.hysteresis is None:
            self.hysteresis = AlertHysteresis(self.profile.thresholds)
        if self.silence is None:
            self.silence = SilenceDetector(self.profile.silence_after_seconds)

    @classmethod
    def new(cls, equipment_id: str, profile: EquipmentProfile) -> EquipmentState:
        return cls(equipment_id, profile, RollingWindow(profile.window, len(profile.informative_sensors)))

    # --- ingest -----------------------------------------------------------------------------------

    def apply_readings(
        self, readings: Sequence[Reading], now: float
    ) -> tuple[ApplyResult, list[AlertTransition]]:
        """Dedupe by seq, push fresh readings into the window, compute features for each full window.

        Features for all new window positions come from one vectorised call on [previous W-1 rows +
        new rows] through the same pipeline training uses. Returns the silence-clear transition too,
        if the machine had been flagged silent.
        """
        for r in readings:
            if r.equipment_id != self.equipment_id:
                raise ValueError(f"reading for {r.equipment_id!r} sent to actor {self.equipment_id!r}")
            if r.profile != self.profile.name:
                raise ValueError(
                    f"reading profile {r.profile!r} does not match the machine's {self.profile.name!r}"
                )
        fresh, dup = self.tracker.split(readings)
        self.duplicates += dup
        self.updated_at = now
        transitions: list[AlertTransition] = []
        if not fresh:
            return ApplyResult(0, dup, []), transitions
        assert self.silence is not None
        back = self.silence.on_reading()
        if back is not None:
            transitions.append(back)

        w = self.profile.window
        prev = self.window.to_array()[-(w - 1) :] if w > 1 else np.empty((0, self.window.n_columns))
        new_rows = np.stack([self.profile.row_from_values(r.values) for r in fresh])
        first_age = self.readings_applied + 1
        ages_new = np.arange(first_age, first_age + len(fresh), dtype=np.float64)
        ages = np.concatenate([np.arange(first_age - len(prev), first_age, dtype=np.float64), ages_new])
        feats = offline_features(np.vstack([prev, new_rows]), self.profile, ages=ages)
        # feats row j is the window ending at combined row w-1+j, i.e. at fresh[w-1+j-len(prev)].
        names = feature_names(self.profile)
        lead = w - 1 - len(prev)  # fresh readings needed before the first full window (0 once warm)
        vectors: list[FeatureVector] = []
        for j in range(feats.shape[0]):
            reading = fresh[j + lead]
            vectors.append(
                FeatureVector(
                    equipment_id=self.equipment_id,
                    profile=self.profile.name,
                    feature_names=names,
                    values=feats[j].tolist(),
                    window_end_seq=reading.seq,
                    age_cycles=float(feats[j, -1]),
                )
            )

        for reading, row in zip(fresh, new_rows, strict=True):
            self.window.append(row)
            self.tracker.mark_applied(reading.seq)
            self.readings_applied += 1
            if self.baseline is None and self.window.is_full:
                self.baseline = self.window.to_array()
        self.last_reading_at = now
        return ApplyResult(len(fresh), dup, vectors), transitions

    def latest_features(self) -> FeatureVector | None:
        """Features of the current window (None while warming up), e.g. to re-predict after a stale call."""
        if not self.window.is_full:
            return None
        values = online_features(self.window.to_array(), float(self.readings_applied), self.profile)
        return FeatureVector(
            equipment_id=self.equipment_id,
            profile=self.profile.name,
            feature_names=feature_names(self.profile),
            values=values.tolist(),
            window_end_seq=self.tracker.last_seq,
            age_cycles=float(self.readings_applied),
        )

    # --- predictions and alerts -------------------------------------------------------------------

    def record_predictions(
        self, points: Sequence[tuple[int, float]], model_version: int, now: float
    ) -> list[AlertTransition]:
        """Feed (window_end_seq, predicted RUL) pairs, in order, through history and hysteresis."""
        assert self.hysteresis is not None
        transitions: list[AlertTransition] = []
        for seq, rul in points:
            self.history.append(HistoryPoint(int(seq), now, float(rul), int(model_version)))
            t = self.hysteresis.update(float(rul), now)
            if t is not None:
                transitions.append(t)
        if points:
            self.predicted_rul = float(points[-1][1])
            self.model_version = int(model_version)
            self.prediction_stale = False
        self.updated_at = now
        return transitions

    def mark_prediction_stale(self, now: float) -> None:
        """Inference was unreachable: keep the last prediction but say it no longer reflects the window."""
        self.prediction_stale = True
        self.updated_at = now

    def check_silence(self, now: float) -> AlertTransition | None:
        assert self.silence is not None
        t = self.silence.check(self.last_reading_at, now)
        if t is not None:
            self.updated_at = now
        return t

    def get_history(self, n: int) -> list[HistoryPoint]:
        return list(self.history)[-n:] if n > 0 else []

    def status(self) -> Status:
        assert self.hysteresis is not None and self.silence is not None
        if self.silence.silent:
            return "silent"
        if self.hysteresis.level != "none":
            return self.hysteresis.level
        if not self.window.is_full or self.predicted_rul is None:
            return "warming_up"
        return "ok"

    def snapshot(self, now: float) -> HealthSnapshot:
        assert self.hysteresis is not None
        return HealthSnapshot(
            equipment_id=self.equipment_id,
            profile=self.profile.name,
            last_seq=self.tracker.last_seq,
            readings_applied=self.readings_applied,
            duplicates=self.duplicates,
            predicted_rul=self.predicted_rul,
            prediction_stale=self.prediction_stale,
            model_version=self.model_version,
            status=self.status(),
            last_reading_at=None if self.last_reading_at is None else from_epoch(self.last_reading_at),
            updated_at=from_epoch(self.updated_at if self.updated_at is not None else now),
            open_alert_severity=self.hysteresis.open_severity,
        )

    def build_alert(self, transition: AlertTransition, now: float, k: int = 3) -> Alert:
        """The wire `Alert` for a transition, with the sensors that moved most since the baseline."""
        top: list[SensorDeviation] = []
        if transition.kind == "rul_low" and self.baseline is not None and self.window.is_full:
            sensors = self.profile.informative_sensors
            top = top_deviating_sensors(self.baseline, self.window.to_array(), sensors, k)
        if transition.kind == "rul_low":
            message = (
                f"{self.equipment_id}: predicted RUL {self.predicted_rul:.0f} cycles ({transition.severity})"
                if self.predicted_rul is not None
                else f"{self.equipment_id}: RUL low ({transition.severity})"
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
            predicted_rul=self.predicted_rul,
            model_version=self.model_version,
            top_sensors=top,
            message=message,
            raised_at=from_epoch(transition.raised_at),
            updated_at=from_epoch(now),
        )

    # --- persistence ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        assert self.hysteresis is not None and self.silence is not None
        return {
            "v": STATE_VERSION,
            "profile": self.profile.name,
            "window": self.window.to_dict(),
            "last_seq": self.tracker.last_seq,
            "hysteresis": self.hysteresis.to_dict(),
            "silence": self.silence.to_dict(),
            "baseline": None if self.baseline is None else encode_array(self.baseline),
            "history": [[p.seq, p.at, p.predicted_rul, p.model_version] for p in self.history],
            "readings_applied": self.readings_applied,
            "duplicates": self.duplicates,
            "predicted_rul": self.predicted_rul,
            "model_version": self.model_version,
            "prediction_stale": self.prediction_stale,
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
        window = RollingWindow.from_dict(data["window"])
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
            window=window,
            tracker=SequenceTracker(int(data["last_seq"])),
            hysteresis=AlertHysteresis.from_dict(data["hysteresis"], profile.thresholds),
            silence=SilenceDetector.from_dict(data["silence"], profile.silence_after_seconds),
            baseline=baseline,
            history=history,
            readings_applied=int(data["readings_applied"]),
            duplicates=int(data["duplicates"]),
            predicted_rul=opt_float("predicted_rul"),
            model_version=None if mv is None else int(mv),
            prediction_stale=bool(data.get("prediction_stale", False)),
            last_reading_at=opt_float("last_reading_at"),
            updated_at=opt_float("updated_at"),
        )
