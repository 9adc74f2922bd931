"""A machine's alert state machines: the prediction hysteresis (`rul_low`) and the timed alarms
(`silent`, `stale`), with flapping suppression and the operator's resolve.

Pure and deterministic: callers pass every time (epoch seconds). The hysteresis runs on the machine's
own clock (each reading's timestamp), because one actor call can decide several transitions from a
batch or a catch-up and each must carry the time of the reading that decided it; the timed alarms run
on the wall clock, because the actor's reminder does.

Each state machine numbers the events of an episode (`revision`: open = 1, then escalate, clear,
reopen...), so alerting can order them whatever order pub/sub delivers them in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal

from apps.common.contracts import AlertEvent, AlertKind, SensorDeviation, Severity
from apps.common.profiles import AnomalyThresholds, ProbabilityThresholds, Thresholds

Level = Literal["none", "warning", "critical"]
LEVELS: Final = ("none", "warning", "critical")


@dataclass(frozen=True, slots=True)
class AlertTransition:
    """A change a state machine decided on; the actor turns it into an `Alert`."""

    kind: AlertKind
    event: AlertEvent
    severity: Severity
    episode: int
    revision: int  # the event's position in its episode, 1 = open
    raised_at: float  # epoch seconds the episode opened
    at: float  # epoch seconds of this event: its reading's timestamp, or the clock for timed alarms
    # The reading that decided it and what its prediction reported (a catch-up decides several
    # transitions at once, and the latest prediction and window would misreport them). None for
    # silence and stale, which no reading decides.
    seq: int | None = None
    predicted_rul: float | None = None
    top_sensors: tuple[SensorDeviation, ...] | None = None
    reason: str = ""  # why a `resolve` ended the episode (the event that started a new life)


def judge(thresholds: Thresholds, value: float) -> tuple[bool, bool, bool]:
    """(at or past warning, at or past critical, clearly healthy) for one prediction: a RUL is worse
    when low, a failure probability when high, an anomaly score when above the thresholds its model
    card learnt (none learnt yet: neither alarming nor healthy, so nothing opens or clears)."""
    t = thresholds
    if isinstance(t, AnomalyThresholds):
        if t.warning_score is None or t.critical_score is None:
            return False, False, False
        return value > t.warning_score, value > t.critical_score, value <= t.warning_score
    if isinstance(t, ProbabilityThresholds):
        return value >= t.warning_probability, value >= t.critical_probability, value < t.clear_probability
    return value <= t.warning_rul, value <= t.critical_rul, value > t.clear_rul


@dataclass(slots=True)
class AlertHysteresis:
    """The prediction alert's state machine (kind `rul_low`, for a classifier's probability too).

    Opens at `warning` after `consecutive` predictions at or past the warning threshold (at `critical`
    directly if those were also past the critical one), escalates warning -> critical after
    `consecutive` predictions past critical, and clears only after `consecutive` clearly healthy
    predictions. A critical alert does not step back down to warning. An episode that cleared and
    comes back within `reopen_within` seconds (of the readings' clock) re-opens (`reopen`) instead of
    starting a new episode, so a condition flapping around the clear level is one alert.
    """

    thresholds: Thresholds
    reopen_within: float = 0.0
    level: Level = "none"
    episode: int = 0  # count of episodes ever opened; the current one when level != "none"
    raised_at: float | None = None  # kept after a clear: a reopen continues the episode
    below_warning: int = 0  # consecutive predictions at or past warning
    below_critical: int = 0  # consecutive predictions at or past critical
    above_clear: int = 0  # consecutive clearly healthy predictions
    revision: int = 0  # events of the current episode so far
    cleared_at: float | None = None  # when the episode cleared; None once a reopen is ruled out

    def update(self, value: float, seq: int, at: float) -> AlertTransition | None:
        warning, critical, healthy = judge(self.thresholds, value)
        self.below_warning = self.below_warning + 1 if warning else 0
        self.below_critical = self.below_critical + 1 if critical else 0
        self.above_clear = self.above_clear + 1 if healthy else 0
        n = self.thresholds.consecutive
        if self.level == "none":
            if self.below_warning < n:
                return None
            self.level = "critical" if self.below_critical >= n else "warning"
            event: AlertEvent = "open"
            if self.cleared_at is not None and at - self.cleared_at <= self.reopen_within:
                event = "reopen"
            else:
                self.episode += 1
                self.raised_at = at
                self.revision = 0
            self.cleared_at = None
            return self._transition(event, seq, at)
        if self.level == "warning" and self.below_critical >= n:
            self.level = "critical"
            return self._transition("escalate", seq, at)
        if self.above_clear >= n:
            transition = self._transition("clear", seq, at)
            self.level = "none"
            self.cleared_at = at
            return transition
        return None

    def end_episode(self, episode: int) -> bool:
        """An operator resolved `episode`: end it. The counts start over, so a condition that persists
        opens a new episode after `consecutive` predictions, and never re-opens this one. False when
        `episode` is not this machine's latest."""
        if episode != self.episode or episode == 0:
            return False
        self.level = "none"
        self.below_warning = self.below_critical = self.above_clear = 0
        self.cleared_at = None
        return True

    def new_life(self, reason: str, at: float) -> AlertTransition | None:
        """The machine started a new life (maintenance, replacement, failure): the open episode, if
        any, ends as `resolve` with `reason`, and the counts start over. Episode numbers go on (an
        alert id names its episode), and a cleared episode is not re-opened across the boundary."""
        transition = None
        if self.level != "none":
            assert self.raised_at is not None
            self.revision += 1
            transition = AlertTransition(
                "rul_low", "resolve", self.level, self.episode, self.revision, self.raised_at, at,
                reason=reason,
            )  # fmt: skip
        self.level = "none"
        self.below_warning = self.below_critical = self.above_clear = 0
        self.cleared_at = None
        return transition

    def _transition(self, event: AlertEvent, seq: int, at: float) -> AlertTransition:
        assert self.level != "none" and self.raised_at is not None
        self.revision += 1
        return AlertTransition(
            "rul_low", event, self.level, self.episode, self.revision, self.raised_at, at, seq
        )

    @property
    def open_severity(self) -> Severity | None:
        return None if self.level == "none" else self.level

    def to_dict(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "episode": self.episode,
            "raised_at": self.raised_at,
            "counts": [self.below_warning, self.below_critical, self.above_clear],
            "revision": self.revision,
            "cleared_at": self.cleared_at,
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], thresholds: Thresholds, reopen_within: float = 0.0
    ) -> AlertHysteresis:
        bw, bc, ac = (int(c) for c in data["counts"])
        level = data["level"]
        if level not in LEVELS:
            raise ValueError(f"bad hysteresis level {level!r}")
        return cls(
            thresholds,
            reopen_within,
            level,
            int(data["episode"]),
            _opt_float(data.get("raised_at")),
            bw,
            bc,
            ac,
            int(data.get("revision", 0)),  # state written before revisions: numbering starts over
            _opt_float(data.get("cleared_at")),
        )


@dataclass(slots=True)
class TimedAlarm:
    """An alert for a condition that has lasted too long: no readings (`silent`), or predictions owed
    because inference is unreachable (`stale`). Opens once per episode, clears when the condition
    ends; comes back within `reopen_within` seconds of a clear as a `reopen` of the same episode.
    """

    kind: AlertKind
    after_seconds: float
    reopen_within: float = 0.0
    active: bool = False
    episode: int = 0
    raised_at: float | None = None
    revision: int = 0
    cleared_at: float | None = None
    # An operator resolved the episode while the condition held: it counts again from then, so the
    # alarm is not raised again at the next check.
    resolved_at: float | None = None

    def check(self, since: float | None, now: float) -> AlertTransition | None:
        """Open (or re-open) if the condition has held since `since` for long enough (None: it does not)."""
        if self.active or since is None:
            return None
        if self.resolved_at is not None:
            since = max(since, self.resolved_at)
        if now - since < self.after_seconds:
            return None
        self.active = True
        event: AlertEvent = "open"
        if self.cleared_at is not None and now - self.cleared_at <= self.reopen_within:
            event = "reopen"
        else:
            self.episode += 1
            self.raised_at = now
            self.revision = 0
        self.cleared_at = None
        return self._transition(event, now)

    def condition_ended(self, now: float) -> AlertTransition | None:
        """The condition ended: clear the open episode, if any."""
        self.resolved_at = None
        if not self.active:
            return None
        transition = self._transition("clear", now)
        self.active = False
        self.cleared_at = now
        return transition

    def end_episode(self, episode: int, now: float) -> bool:
        """An operator resolved `episode`: end it, and count the condition again from `now`."""
        if episode != self.episode or episode == 0:
            return False
        self.active = False
        self.cleared_at = None
        self.resolved_at = now
        return True

    def new_life(self, reason: str, now: float) -> AlertTransition | None:
        """The machine started a new life: an open episode ends as `resolve` with `reason`, and the
        condition counts again from `now` (a machine silent while it was maintained is not news)."""
        transition = None
        if self.active:
            assert self.raised_at is not None
            self.revision += 1
            transition = AlertTransition(
                self.kind, "resolve", "warning", self.episode, self.revision, self.raised_at, now,
                reason=reason,
            )  # fmt: skip
        self.active = False
        self.cleared_at = None
        self.resolved_at = now
        return transition

    def _transition(self, event: AlertEvent, now: float) -> AlertTransition:
        assert self.raised_at is not None
        self.revision += 1
        return AlertTransition(self.kind, event, "warning", self.episode, self.revision, self.raised_at, now)

    def to_dict(self) -> dict[str, Any]:
        return {
            "active": self.active,
            "episode": self.episode,
            "raised_at": self.raised_at,
            "revision": self.revision,
            "cleared_at": self.cleared_at,
            "resolved_at": self.resolved_at,
        }

    @classmethod
    def from_dict(
        cls, kind: AlertKind, data: dict[str, Any] | None, after_seconds: float, reopen_within: float = 0.0
    ) -> TimedAlarm:
        if not data:
            return cls(kind, after_seconds, reopen_within)
        return cls(
            kind,
            after_seconds,
            reopen_within,
            bool(data.get("active", data.get("silent"))),  # "silent": state written before TimedAlarm
            int(data["episode"]),
            _opt_float(data.get("raised_at")),
            int(data.get("revision", 0)),
            _opt_float(data.get("cleared_at")),
            _opt_float(data.get("resolved_at")),
        )


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)
