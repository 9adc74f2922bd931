"""Go standard-library behaviour the bindings depend on, so bytes on the wire match daprd's.

daprd's HTTP API re-encodes a binding request's `data` with encoding/json; bindings.localstorage
un-quotes and base64-decodes what it is given with strconv.Unquote and base64.StdEncoding;
bindings.http canonicalises response header names the way net/http does; the cron binding
formats times with time.Time.String. Each is reproduced here, with the quirks that decide results.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

_TRUTHY = {"y", "yes", "true", "t", "on", "1"}


def is_truthy(value: str) -> bool:
    """dapr/kit's strings.IsTruthy."""
    return value.strip().lower() in _TRUTHY


# ---------------------------------------------------------------------------------- encoding/json
def decode_json(raw: bytes) -> Any:
    """json.Unmarshal into an interface{}: numbers become float64, NaN/Infinity are not JSON.

    Raises ValueError with the reason when Go would refuse the document.
    """

    def refuse(token: str) -> float:
        raise ValueError(f"invalid character {token[0]!r} looking for beginning of value")

    def number(text: str) -> float:
        value = float(text)
        if math.isinf(value):
            raise ValueError(f"cannot unmarshal number {text} into Go value of type float64")
        return value

    return json.loads(raw, parse_constant=refuse, parse_int=number, parse_float=number)


def marshal_json(value: Any) -> bytes:
    """json.Marshal of a value decode_json produced: sorted keys, HTML-safe escapes, Go's floats."""
    return _encode(value).encode()


def _encode(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int | float):
        return _float(float(value))
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ",".join(_encode(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_string(k)}:{_encode(value[k])}" for k in sorted(value)) + "}"
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def _float(value: float) -> str:
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    magnitude = abs(value)
    if 1e-6 <= magnitude < 1e21:
        return format(Decimal(repr(value)).normalize(), "f")  # Go's 'f' with the shortest digits
    # Go's 'e' with the shortest digits, then "e-07" cleaned to "e-7" (exponents here are >= 21 or <= -7).
    mantissa, _, exponent = repr(value).partition("e")
    return f"{mantissa}e{exponent[0]}{exponent[1:].lstrip('0')}"


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
_HTML = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _string(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch in _HTML:
            out.append(_HTML[ch])
        elif ch < " ":
            out.append(f"\\u{ord(ch):04x}")
        elif "\ud800" <= ch <= "\udfff":
            out.append("\ufffd")  # Go decodes a lone surrogate escape to the replacement character
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# ---------------------------------------------------------------------------------- strconv.Unquote
_SIMPLE = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92}
_HEX = set(b"0123456789abcdefABCDEF")


def unquote(raw: bytes) -> bytes | None:
    """strconv.Unquote: the contents of a Go string literal ("...", `...` or '.'), else None."""
    if len(raw) < 2 or raw[0] != raw[-1] or raw[:1] not in (b'"', b"'", b"`"):
        return None
    quote, body = raw[0], raw[1:-1]
    if quote == ord("`"):
        return None if b"`" in body else body.replace(b"\r", b"")
    if b"\n" in body:
        return None
    out = bytearray()
    runes = 0
    i = 0
    while i < len(body):
        c = body[i]
        if c == quote:
            return None
        runes += 1
        if c >= 0x80:
            size = _rune_size(body, i)
            out += body[i : i + size] if size else "\ufffd".encode()
            i += size or 1
            continue
        if c != ord("\\"):
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(body):
            return None
        esc = chr(body[i + 1])
        i += 2
        if esc in _SIMPLE:
            out.append(_SIMPLE[esc])
        elif esc in ("x", "u", "U"):
            width = {"x": 2, "u": 4, "U": 8}[esc]
            digits = body[i : i + width]
            if len(digits) != width or not set(digits) <= _HEX:
                return None
            value = int(digits, 16)
            i += width
            if esc == "x":
                out.append(value)  # \x escapes are bytes, not runes
            elif value > 0x10FFFF or 0xD800 <= value <= 0xDFFF:
                return None
            else:
                out += chr(value).encode()
        elif esc in "01234567":
            digits = body[i - 1 : i + 2]
            if len(digits) != 3 or not all(48 <= d <= 55 for d in digits) or int(digits, 8) > 255:
                return None
            out.append(int(digits, 8))
            i += 2
        elif ord(esc) == quote:
            out.append(quote)  # \" only in "...", \' only in '...'
        else:
            return None
    if quote == ord("'") and runes != 1:
        return None
    return bytes(out)


def _rune_size(data: bytes, i: int) -> int:
    """Length of the valid UTF-8 sequence at data[i], or 0 when it is not one."""
    lead = data[i]
    size = 2 if 0xC2 <= lead <= 0xDF else 3 if 0xE0 <= lead <= 0xEF else 4 if 0xF0 <= lead <= 0xF4 else 0
    if size == 0:
        return 0
    try:
        data[i : i + size].decode("utf-8")
    except UnicodeDecodeError:
        return 0
    return size


# ---------------------------------------------------------------------------------- encoding/base64
def decode_base64(raw: bytes) -> bytes | None:
    """base64.StdEncoding.DecodeString: padded, CR and LF ignored; None when it is not base64."""
    text = raw.replace(b"\r", b"").replace(b"\n", b"")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


# ---------------------------------------------------------------------------------- net/http, time
_TOKEN = set("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def canonical_header_key(key: str) -> str:
    """textproto.CanonicalMIMEHeaderKey: "content-type" -> "Content-Type" (invalid keys unchanged)."""
    if not key or any(ch not in _TOKEN for ch in key):
        return key
    return "-".join(part[:1].upper() + part[1:].lower() for part in key.split("-"))


def time_string_utc(ts: float) -> str:
    """time.Time.UTC().String(): "2024-05-01 10:00:03.25 +0000 UTC" (fraction without trailing zeros)."""
    moment = datetime.fromtimestamp(ts, UTC)
    fraction = f"{moment.microsecond:06d}".rstrip("0")
    return moment.strftime("%Y-%m-%d %H:%M:%S") + (f".{fraction}" if fraction else "") + " +0000 UTC"


def path_error(op: str, path: str, exc: OSError) -> str:
    """An *os.PathError's text: "open /x: no such file or directory"."""
    reason = (exc.strerror or str(exc)).lower()
    return f"{op} {path}: {reason}"
