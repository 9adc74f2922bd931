"""Reminder and timer schedules: parsing `dueTime`, `period` and `ttl`, and computing fire times.

daprd accepts, for each field (pkg/actors/internal/reminders, timeutils):
- `dueTime`: a Go duration ("5s", the SDK's "0h0m5s0ms0μs"), an ISO 8601 duration ("PT5S") or an
  RFC3339 time; empty means "now".
- `period`: a Go duration (repeats forever), or an ISO 8601 duration with optional repetitions
  ("PT10S", "R5/PT10S" = five fires in all, "R/PT10S" = forever); empty or zero means one-shot.
- `ttl`: a Go or ISO 8601 duration counted from the registration, or an RFC3339 time; after it the
  reminder stops (and is deleted).

All times here are epoch seconds (float) so a schedule survives a restart of the sidecar.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from localdapr.durations import parse_go_duration

_ISO_DURATION = re.compile(
    r"P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)
_REPETITIONS = re.compile(r"R(\d*)/(.+)", re.IGNORECASE)

# ISO 8601 years and months have no fixed length; daprd uses 365 and 30 days.
_ISO_UNITS = {
    "years": 365 * 86400.0,
    "months": 30 * 86400.0,
    "weeks": 7 * 86400.0,
    "days": 86400.0,
    "hours": 3600.0,
    "minutes": 60.0,
    "seconds": 1.0,
}


# A periodic reminder found overdue by more than this when its task starts (a sidecar reloading
# reminders after a restart) fires within its period instead of at once; see `overdue_delay`.
OVERDUE_AFTER = 1.0
OVERDUE_SPREAD_MAX = 60.0


def overdue_delay(key: str, period: float) -> float:
    """Seconds to put off an overdue fire of a periodic reminder: in [0, min(period, 60 s)), by its key.

    A restarted host finds every reminder of a fleet overdue (10,000 machines with a 30 s check, down
    for more than 30 s): fired at once, each an actor activation reading its state, they would all
    hit the app and the store together. Spread by the key, the catch-up fires keep the fleet's
    steady rate, and each reminder still fires within one period of the restart.
    """
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return min(period, OVERDUE_SPREAD_MAX) * int.from_bytes(digest, "big") / float(2**64)


class ScheduleError(ValueError):
    """A dueTime, period or ttl daprd would refuse (the message names the field and the text)."""


def parse_iso_duration(text: str) -> float | None:
    """Seconds in an ISO 8601 duration such as "PT1M30S" or "P1D", or None if `text` is not one."""
    match = _ISO_DURATION.fullmatch(text.strip())
    if match is None or not any(match.groupdict().values()) or text.strip().upper().endswith("T"):
        return None
    return sum(float(v) * _ISO_UNITS[k] for k, v in match.groupdict().items() if v)


def parse_rfc3339(text: str) -> float | None:
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None  # RFC3339 always carries an offset; a bare date-time is not one
    return parsed.timestamp()


def parse_duration(text: str, field: str) -> float:
    """A Go or ISO 8601 duration in seconds."""
    iso = parse_iso_duration(text)
    if iso is not None:
        return iso
    try:
        return parse_go_duration(text)
    except ValueError as exc:
        raise ScheduleError(
            f"invalid {field} {text!r}: not a Go duration, ISO 8601 duration or time"
        ) from exc


def _parse_time(text: str, now: float, field: str) -> float:
    """An RFC3339 time, or a non-negative duration after `now`, as epoch seconds."""
    absolute = parse_rfc3339(text)
    if absolute is not None:
        return absolute
    seconds = parse_duration(text, field)
    if seconds < 0:
        raise ScheduleError(f"invalid {field} {text!r}: negative")
    return now + seconds


def parse_due_time(text: str | None, now: float) -> float:
    """The epoch time of the first fire."""
    return _parse_time(text, now, "dueTime") if text else now


def parse_period(text: str | None) -> tuple[float | None, int | None]:
    """(seconds between fires or None for one-shot, total fires or None for unbounded)."""
    if not text:
        return None, None
    repetitions: int | None = None
    body = text.strip()
    match = _REPETITIONS.fullmatch(body)
    if match is not None:
        repetitions = int(match.group(1)) if match.group(1) else None
        body = match.group(2)
        if repetitions is not None and repetitions < 0:
            raise ScheduleError(f"invalid period {text!r}: negative repetitions")
    seconds = parse_duration(body, "period")
    if seconds < 0:
        raise ScheduleError(f"invalid period {text!r}: negative")
    if seconds == 0:
        return None, None  # a zero period means "fire once", as daprd treats it
    return seconds, repetitions


def parse_ttl(text: str | None, now: float) -> float | None:
    """The epoch time after which the schedule stops, or None."""
    return _parse_time(text, now, "ttl") if text else None


@dataclass(slots=True)
class Schedule:
    """When a reminder or timer fires: first at `first`, then every `period` seconds.

    `repetitions` counts all fires including the first (ISO "R5/..." = 5 fires); `expires_at` stops
    the schedule. `fired` is how many fires have happened, so a reloaded reminder resumes its count.
    """

    first: float
    period: float | None = None
    repetitions: int | None = None
    expires_at: float | None = None
    fired: int = 0

    @classmethod
    def parse(cls, due_time: str | None, period: str | None, ttl: str | None, now: float) -> Schedule:
        first = parse_due_time(due_time, now)
        every, repetitions = parse_period(period)
        expires_at = parse_ttl(ttl, now)
        if expires_at is not None and expires_at < first:
            raise ScheduleError(f"ttl {ttl!r} expires before the first fire (dueTime {due_time!r})")
        if repetitions == 0:
            raise ScheduleError(f"invalid period {period!r}: zero repetitions")
        return cls(first=first, period=every, repetitions=repetitions, expires_at=expires_at)

    def next_fire(self) -> float | None:
        """The epoch time of the next fire, or None when the schedule is over."""
        if self.fired == 0:
            when = self.first
        else:
            if self.period is None:
                return None
            if self.repetitions is not None and self.fired >= self.repetitions:
                return None
            when = self.first + self.fired * self.period
        if self.expires_at is not None and when > self.expires_at:
            return None
        return when

    def skip_missed(self, now: float) -> None:
        """After downtime, do not replay every missed period: keep one fire due now, as daprd does.

        Also for an unbounded reminder with a count of 0 long after its first fire: its count is not
        persisted per fire (reminding.py), so a reloaded one may come back with its first fire long past.
        """
        if self.period is None or (self.fired == 0 and self.repetitions is not None):
            return
        missed = int((now - (self.first + self.fired * self.period)) // self.period)
        if missed > 0:
            self.fired += missed
            if self.repetitions is not None:
                self.fired = min(self.fired, self.repetitions)
