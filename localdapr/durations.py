"""Parsing the Go duration strings found in Dapr resources ("15s", "1m30s", "500ms").

Component metadata, Resiliency policies and the Python SDK all write durations the way Go's
`time.ParseDuration` reads them; the SDK even emits the long form "0h0m5s0ms0μs". localdapr must
accept exactly those spellings, so this mirrors Go's grammar: an optional sign, then one or more
`<number><unit>` pairs with units ns, us/µs/μs, ms, s, m, h, and fractions allowed ("1.5h").

A bare integer ("30") is not valid Go, but components-contrib's metadata decoder falls back to
reading it as whole seconds, so we do the same. (Older contrib components such as the 2021 Redis
Streams broker read bare integers as milliseconds; localdapr does not.)
"""

from __future__ import annotations

import re

_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5 MICRO SIGN (what Go documents)
    "μs": 1e-6,  # U+03BC GREEK SMALL LETTER MU (what the Python SDK writes)
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}

# "ms" must be tried before "m", and the micro spellings before "s".
_PAIR = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_BARE_INTEGER = re.compile(r"[-+]?\d+")


def parse_go_duration(text: str) -> float:
    """Seconds in `text`, a Go duration string or a bare integer number of seconds.

    Raises ValueError naming the text when it is neither, so a bad component field is easy to find.
    """
    raw = text
    text = text.strip()
    if not text:
        raise ValueError(f"invalid duration {raw!r}: empty (expected e.g. '15s', '500ms', '1m30s')")
    if _BARE_INTEGER.fullmatch(text):
        return float(int(text))
    sign = 1.0
    body = text
    if body[0] in "+-":
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    total = 0.0
    pos = 0
    for match in _PAIR.finditer(body):
        if match.start() != pos:
            break
        number, unit = match.groups()
        total += float(number) * _UNIT_SECONDS[unit]
        pos = match.end()
    if pos == 0 or pos != len(body):
        raise ValueError(
            f"invalid duration {raw!r}: expected a Go duration such as '15s', '500ms', '1m30s' or '1h' "
            "(units ns, us, ms, s, m, h) or a whole number of seconds"
        )
    return sign * total
