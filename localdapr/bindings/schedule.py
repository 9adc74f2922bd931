"""Cron schedules exactly as daprd's cron binding reads them.

bindings.cron parses its `schedule` with dapr/kit/cron, a fork of robfig/cron v3, configured with
`SecondOptional | Minute | Hour | Dom | Month | Dow | Descriptor`. That parser is ported here rather
than taken from a cron library because the details differ between implementations and a schedule
must fire at the same moments under localdapr and daprd:

- 6 fields (second minute hour day-of-month month day-of-week) or 5 (seconds default to 0);
- `*` and `?`, ranges `a-b`, steps `*/n`, `a-b/n` and `a/n` (= `a-max/n`), lists `a,b`; month and
  weekday names (`JAN`, `mon`); day of week 0-6 (Sunday = 0; 7 is refused, as robfig refuses it);
- day of month and day of week: if either field starts with `*` or `?` (and has no step > 1) both
  must match, otherwise either may (robfig's rule, not Vixie cron's);
- an optional `CRON_TZ=<IANA zone> ` or `TZ=<zone> ` prefix; without it, the host's local time;
- descriptors `@yearly`/`@annually`, `@monthly`, `@weekly` (Sunday), `@daily`/`@midnight`,
  `@hourly` at the start of the period, and `@every <Go duration>` (kit's fork truncates the delay
  to milliseconds, minimum 1 ms, and counts it from the previous fire rounded down to the millisecond).

Times are epoch seconds; `next(after)` is the first fire strictly after `after`, or None when no
time within five years matches (e.g. "0 0 0 30 2 *"), as robfig gives up after five years.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from localdapr.durations import parse_go_duration


class CronError(ValueError):
    """A schedule daprd's parser refuses; the message is the parser's."""


@dataclass(frozen=True, slots=True)
class _Bounds:
    low: int
    high: int
    names: dict[str, int]


_SECONDS = _Bounds(0, 59, {})
_MINUTES = _Bounds(0, 59, {})
_HOURS = _Bounds(0, 23, {})
_DOM = _Bounds(1, 31, {})
_MONTHS = _Bounds(
    1,
    12,
    {m: i for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split(), start=1)},
)
_DOW = _Bounds(0, 6, {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())})

# Go's strconv.Atoi: an optional sign and ASCII digits only (Python's int() also takes "1_0", " 1").
_GO_INT = re.compile(r"[+-]?[0-9]+")


class _Zone:
    """Wall-clock arithmetic in one time zone (None = the host's local zone), the way Go's time does it.

    Naive datetimes are wall-clock times in the zone; adding hours/minutes/seconds goes through epoch
    seconds (Go's Time.Add is absolute), adding days or months goes through the wall clock and is then
    normalised (Go's AddDate / Date).
    """

    def __init__(self, tz: tzinfo | None) -> None:
        self.tz = tz

    def wall(self, ts: float) -> datetime:
        if self.tz is None:
            return datetime.fromtimestamp(ts)
        return datetime.fromtimestamp(ts, self.tz).replace(tzinfo=None)

    def ts(self, wall: datetime) -> float:
        if self.tz is None:
            return wall.timestamp()
        return wall.replace(tzinfo=self.tz).timestamp()

    def normalise(self, wall: datetime) -> datetime:
        return self.wall(self.ts(wall))

    def add(self, wall: datetime, seconds: float) -> datetime:
        return self.wall(self.ts(wall) + seconds)


@dataclass(frozen=True, slots=True)
class Every:
    """`@every <duration>`: a constant delay, whole milliseconds."""

    delay_ms: int

    def next(self, after: float) -> float | None:
        return (math.floor(after * 1000) + self.delay_ms) / 1000


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A crontab line as sets of allowed values per field."""

    seconds: frozenset[int]
    minutes: frozenset[int]
    hours: frozenset[int]
    dom: frozenset[int]
    months: frozenset[int]
    dow: frozenset[int]
    dom_star: bool
    dow_star: bool
    tz: tzinfo | None  # None = the host's local time

    def _day_matches(self, t: datetime) -> bool:
        dom_match = t.day in self.dom
        dow_match = (t.weekday() + 1) % 7 in self.dow  # Python's Monday=0 -> Go's Sunday=0
        if self.dom_star or self.dow_star:
            return dom_match and dow_match
        return dom_match or dow_match

    def next(self, after: float) -> float | None:
        """robfig's SpecSchedule.Next: advance field by field, restarting on each wrap-around."""
        zone = _Zone(self.tz)
        t = zone.wall(math.floor(after) + 1)  # the upcoming whole second
        added = False  # once a field moved, the smaller fields restart at their minimum
        year_limit = t.year + 5
        while True:
            if t.year > year_limit:
                return None
            wrapped = False
            while t.month not in self.months:
                if not added:
                    added = True
                    t = zone.normalise(datetime(t.year, t.month, 1))
                t = zone.normalise(_add_months(t, 1))
                if t.month == 1:
                    wrapped = True
                    break
            if wrapped:
                continue
            while not self._day_matches(t):
                if not added:
                    added = True
                    t = zone.normalise(datetime(t.year, t.month, t.day))
                t = zone.normalise(t + timedelta(days=1))
                if t.hour != 0:  # midnight skipped or repeated by a DST change
                    t = zone.add(t, (24 - t.hour) * 3600 if t.hour > 12 else -t.hour * 3600)
                if t.day == 1:
                    wrapped = True
                    break
            if wrapped:
                continue
            while t.hour not in self.hours:
                if not added:
                    added = True
                    t = zone.normalise(t.replace(minute=0, second=0, microsecond=0))
                t = zone.add(t, 3600)
                if t.hour == 0:
                    wrapped = True
                    break
            if wrapped:
                continue
            while t.minute not in self.minutes:
                if not added:
                    added = True
                    t = t.replace(second=0, microsecond=0)
                t = zone.add(t, 60)
                if t.minute == 0:
                    wrapped = True
                    break
            if wrapped:
                continue
            while t.second not in self.seconds:
                if not added:
                    added = True
                    t = t.replace(microsecond=0)
                t = zone.add(t, 1)
                if t.second == 0:
                    wrapped = True
                    break
            if wrapped:
                continue
            return zone.ts(t)


Schedule = Every | CronSchedule


def _add_months(t: datetime, months: int) -> datetime:
    # Go's AddDate normalises overflow (Jan 31 + 1 month = Mar 3), so build from day 1 and add days.
    index = t.year * 12 + (t.month - 1) + months
    first = t.replace(year=index // 12, month=index % 12 + 1, day=1)
    return first + timedelta(days=t.day - 1)


def _go_fields(fields: list[str]) -> str:
    return "[" + " ".join(fields) + "]"  # how Go's %s prints a []string in the parser's errors


def _parse_int(expr: str) -> int:
    if not _GO_INT.fullmatch(expr):
        raise CronError(f'failed to parse int from {expr}: strconv.Atoi: parsing "{expr}": invalid syntax')
    value = int(expr)
    if value < 0:
        raise CronError(f"negative number ({value}) not allowed: {expr}")
    return value


def _parse_int_or_name(expr: str, bounds: _Bounds) -> int:
    named = bounds.names.get(expr.lower())
    return named if named is not None else _parse_int(expr)


def _parse_range(expr: str, bounds: _Bounds) -> tuple[set[int], bool]:
    """The values of one `a`, `a-b`, `*`, with an optional `/step`; and whether it counts as a star."""
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    star = False
    if low_and_high[0] in ("*", "?"):
        start, end, star = bounds.low, bounds.high, True
    else:
        start = _parse_int_or_name(low_and_high[0], bounds)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _parse_int_or_name(low_and_high[1], bounds)
        else:
            raise CronError(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _parse_int(range_and_step[1])
        if len(low_and_high) == 1:
            end = bounds.high  # "N/step" means "N-max/step"
        if step > 1:
            star = False
    else:
        raise CronError(f"too many slashes: {expr}")
    if start < bounds.low:
        raise CronError(f"beginning of range ({start}) below minimum ({bounds.low}): {expr}")
    if end > bounds.high:
        raise CronError(f"end of range ({end}) above maximum ({bounds.high}): {expr}")
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise CronError(f"step of range should be a positive number: {expr}")
    return set(range(start, end + 1, step)), star


def _parse_field(field: str, bounds: _Bounds) -> tuple[frozenset[int], bool]:
    values: set[int] = set()
    star = False
    for expr in (part for part in field.split(",") if part):  # Go's FieldsFunc drops empty parts
        more, is_star = _parse_range(expr, bounds)
        values |= more
        star = star or is_star
    return frozenset(values), star


def _load_location(name: str) -> tzinfo | None:
    if name in ("", "UTC"):
        return ZoneInfo("UTC")
    if name == "Local":
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(f"provided bad location {name}: unknown time zone {name}") from exc


def _every(spec: str) -> Every:
    text = spec[len("@every ") :]
    # Go's time.ParseDuration: no surrounding spaces and no bare numbers except "0" (localdapr's
    # parser is more lenient for component fields, which components-contrib decodes differently).
    bare = _GO_INT.fullmatch(text) and text.lstrip("+-") != "0"
    try:
        if bare or text != text.strip():
            raise ValueError(text)
        seconds = parse_go_duration(text)
    except ValueError:
        raise CronError(
            f'failed to parse duration {spec}: time: invalid duration "{text}"'
            if not bare
            else f'failed to parse duration {spec}: time: missing unit in duration "{text}"'
        ) from None
    delay_ns = max(round(seconds * 1e9), 1_000_000)
    return Every(delay_ms=delay_ns // 1_000_000)


def _descriptor(spec: str, tz: tzinfo | None) -> Schedule:
    hours = frozenset(range(0, 24))
    days = frozenset(range(1, 32))
    months = frozenset(range(1, 13))
    weekdays = frozenset(range(0, 7))
    zero = frozenset({0})
    fixed: dict[str, tuple[frozenset[int], ...]] = {
        # second, minute, hour, day of month, month, day of week
        "@yearly": (zero, zero, zero, frozenset({1}), frozenset({1}), weekdays),
        "@annually": (zero, zero, zero, frozenset({1}), frozenset({1}), weekdays),
        "@monthly": (zero, zero, zero, frozenset({1}), months, weekdays),
        "@weekly": (zero, zero, zero, days, months, zero),
        "@daily": (zero, zero, zero, days, months, weekdays),
        "@midnight": (zero, zero, zero, days, months, weekdays),
        "@hourly": (zero, zero, hours, days, months, weekdays),
    }
    if spec in fixed:
        second, minute, hour, dom, month, dow = fixed[spec]
        # robfig's all() sets the star bit on full fields, which decides the dom/dow rule.
        return CronSchedule(
            second, minute, hour, dom, month, dow, dom_star=dom == days, dow_star=dow == weekdays, tz=tz
        )
    if spec.startswith("@every "):
        return _every(spec)
    raise CronError(f"unrecognized descriptor: {spec}")


def parse(spec: str) -> Schedule:
    """Parse a bindings.cron `schedule`; raise CronError with robfig's message when it is invalid."""
    if not spec:
        raise CronError("empty spec string")
    tz: tzinfo | None = None
    if spec.startswith(("TZ=", "CRON_TZ=")):
        space = next((i for i, ch in enumerate(spec) if ch.isspace()), -1)
        if space == -1:
            raise CronError(f"timezone prefix {spec} is not followed by a schedule")
        tz = _load_location(spec[spec.index("=") + 1 : space])
        spec = spec[space:].strip()
    if spec.startswith("@"):
        return _descriptor(spec, tz)
    fields = spec.split()
    if not 5 <= len(fields) <= 6:
        raise CronError(f"expected 5 to 6 fields, found {len(fields)}: {_go_fields(fields)}")
    if len(fields) == 5:
        fields = ["0", *fields]
    second, _ = _parse_field(fields[0], _SECONDS)
    minute, _ = _parse_field(fields[1], _MINUTES)
    hour, _ = _parse_field(fields[2], _HOURS)
    dom, dom_star = _parse_field(fields[3], _DOM)
    month, _ = _parse_field(fields[4], _MONTHS)
    dow, dow_star = _parse_field(fields[5], _DOW)
    return CronSchedule(second, minute, hour, dom, month, dow, dom_star=dom_star, dow_star=dow_star, tz=tz)
