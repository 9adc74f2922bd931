"""What every app does with a request body before its routes see it: hostile input gets a 4xx, never a 500.

- A body with a Content-Type other than JSON (`application/json`, `application/*+json`) -> 415.
- A body larger than the app's limit -> 413 (by Content-Length before reading, else while reading).
- JSON nested deeper than `MAX_JSON_DEPTH` -> 400: Python's parser raises RecursionError near depth
  1000, and a structure just below that breaks the first recursive step after parsing (a dump to a
  dead letter, a log line), so the bound is checked on the raw bytes before anyone parses them.
- A number that is not finite -> 400: Python's parser takes `NaN` and `Infinity` (not JSON) and turns
  one past a double's range (`1e400`) into inf, a value no JSON answer can carry, so the 422 naming
  it failed to render (a 500). Only a body that could hold one is parsed to find out.
- DELETE bodies are checked like POST, PUT and PATCH ones (a retire carries an operator's note).

A Dapr pub/sub delivery (`/events/...`, DaprApp's routes) that is too big or too deep is answered DROP
instead: the message can never pass, and an error status would make the broker redeliver it forever.
Its content type is the sidecar's choice, so the route decides what it can decode. Actor calls
(`/actors/...`) come from the app's own sidecar with the SDK's bodies and are left alone, as are the
paths an app names as `exempt` (the dashboard's NiceGUI socket.io traffic).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np
import orjson
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse

from apps.common.asgi import ASGIApp, Message, Receive, Scope, Send
from apps.common.publisher import json_safe

log = logging.getLogger("vigil.httpguard")

MAX_JSON_DEPTH: Final = 32
# daprd refuses requests above 4 MiB by default (--max-body-size), so an internal app needs no more.
DEFAULT_MAX_BODY_BYTES: Final = 4 * 1024 * 1024
_BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ACTOR_ROUTES: Final = "/actors/"
_DELIVERY_PREFIX: Final = "/events/"
# A JSON string, escapes included (the unrolled form: linear, no backtracking).
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
# What a number past a double's range needs: an exponent of 3 digits or 309 digits in a row. Looked for
# in bodies up to this size only (a readings batch is parsed, and checked, by ingestion itself).
# Digits are mapped to "0" and "E" to "e" first, so a few substring searches find them (faster than a
# regular expression).
_DIGITS = bytes.maketrans(b"123456789E", b"000000000e")
_HUGE_MARKS: Final = (b"e000", b"e+000", b"0" * 309)
_LONG_DIGITS: Final = b"0" * 19
MAX_NUMBER_SCAN_BYTES: Final = 1024 * 1024
# +1 for an opening bracket, -1 for a closing one, 0 for any other byte.
_QUOTE, _OPEN, _CLOSE = ord('"'), b"[{", b"]}"
_NOT_MARKS = bytes(b for b in range(256) if b not in b'"[]{}')  # json_depth keeps only these
_STEP = np.zeros(256, dtype=np.int8)
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


class ErrorDetail(BaseModel):
    """What a refusal says: FastAPI's list of field errors, or one sentence naming the problem."""

    detail: str | list[dict[str, Any]]


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 for a body that fails its model, able to name a value JSON cannot carry (inf, from a
    `1e400` in a body too big for RequestGuard to look for one) instead of failing to render (a 500)."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else [{"msg": str(exc)}]
    return validation_response(errors)


def validation_response(errors: Sequence[Any]) -> JSONResponse:
    """The 422 `validation_error` answers with for `errors` (a RequestValidationError's), for a route
    answered outside FastAPI's exception handling (apps/common/fastroute.py)."""
    return JSONResponse({"detail": json_safe(jsonable_encoder(errors))}, 422)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for refusals whose body is an ErrorDetail."""
    return {status: {"model": ErrorDetail} for status in statuses}


class BadJson(ValueError):
    """The body is not JSON, or not JSON anyone should parse (too deep): a 400 with this message."""


def json_depth(body: bytes) -> int:
    """How deeply arrays and objects nest in `body` (0 for a scalar), ignoring brackets inside strings.

    Vectorised with numpy: a body of brackets only is as cheap as any other body of the same size.
    A body without a backslash and with its quotes paired (every gateway batch of plain ids) is cut
    down to its quotes and brackets (bytes.translate) and its strings masked by the parity of the
    quotes before each: removing them with the regular expression took ~130 ms of a 5,000-reading
    body (3 MB, 160,000 strings) on a loaded machine, ~20 ms this way.
    """
    if b"\\" not in body:
        marks = np.frombuffer(body.translate(None, _NOT_MARKS), dtype=np.uint8)
        steps = ((marks == _OPEN[0]) | (marks == _OPEN[1])).view(np.int8) - (
            (marks == _CLOSE[0]) | (marks == _CLOSE[1])
        ).view(np.int8)
        inside = np.bitwise_xor.accumulate((marks == _QUOTE).view(np.uint8))  # opening quote .. closing
        if not len(inside) or not inside[-1]:  # paired: the strings the regular expression removes
            steps[inside.view(bool)] = 0
            return _deepest(steps)
    return _deepest(_STEP[np.frombuffer(_STRING.sub(b"", body), dtype=np.uint8)])


def _deepest(steps: np.ndarray) -> int:
    """The depth of a body's brackets outside strings, given as +1 (open) / -1 (close) / 0 per byte."""
    steps = steps[steps != 0]
    opens = int(np.count_nonzero(steps == 1))
    if opens <= 1:
        return opens
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


class _NonFinite(ValueError):
    pass


def _no_constant(name: str) -> float:
    raise _NonFinite(name)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NonFinite(text[:40])
    return value


def _maybe_huge(body: bytes) -> bool:
    mapped = body.translate(_DIGITS)
    return any(mark in mapped for mark in _HUGE_MARKS)


def has_long_digit_run(body: bytes) -> bool:
    """Whether `body` holds a run of 19 digits: orjson reads an integer past 64 bits as a float, so such
    a body is for json, which keeps it the integer it is (a huge `seq` must be refused as one). Digits
    mapped to "0", then one substring search: a regular expression took ~50 ms on a 3 MB body, this ~5."""
    return _LONG_DIGITS in body.translate(_DIGITS)


def loads_orjson_first(body: bytes, fallback: Callable[[bytes], Any]) -> Any:
    """`body` decoded by orjson (under half of json's CPU) when orjson reads it as json does, else
    `fallback(body)`, which decides as it did before: orjson refuses NaN and Infinity literals (json
    reads them), UTF-16/32, a byte-order mark, lone surrogate escapes, bytes that are no text, nesting
    past 1,024 levels and text that is no JSON; a body with a run of 19 digits goes to `fallback`
    without asking orjson, which would read an integer outside 64 bits as a float."""
    if not has_long_digit_run(body):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    return fallback(body)


def non_finite_number(body: bytes) -> str | None:
    """The first number of `body` that is not finite (`NaN`, `Infinity`, `1e400`), or None."""
    suspect = b"NaN" in body or b"Infinity" in body
    if not suspect and (len(body) > MAX_NUMBER_SCAN_BYTES or not _maybe_huge(body)):
        return None
    # The marks above also match ids and hex strings ("4e123"): orjson refuses NaN, Infinity and numbers
    # past a double's range, so a body it parses has none, and only the rest pays for the Python parse
    # with a callback per float (which names the number).
    try:
        orjson.loads(body)
        return None
    except orjson.JSONDecodeError:
        pass
    try:
        json.loads(body, parse_constant=_no_constant, parse_float=_finite)
    except _NonFinite as exc:
        return str(exc)
    except (ValueError, RecursionError):
        return None  # malformed: the route says how
    return None


def parse_json(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Decode a body; BadJson naming the problem (its position, or the nesting) otherwise."""
    if json_depth(body) > max_depth:
        raise BadJson(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise BadJson(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except UnicodeDecodeError as exc:
        raise BadJson(f"malformed JSON: not UTF-8 ({exc.reason})") from exc


def is_json_content_type(value: str) -> bool:
    media = value.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class RequestGuard:
    """ASGI middleware applying the checks above to every request that carries a body."""

    def __init__(
        self,
        app: ASGIApp,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_json_depth: int = MAX_JSON_DEPTH,
        exempt: tuple[str, ...] = (),
        numbers_checked_per_item: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_json_depth = max_json_depth
        self.exempt = (ACTOR_ROUTES, *exempt)
        # Routes that refuse a non-finite number item by item (a batch of readings: one bad value is
        # one rejected, dead-lettered reading, and the rest of the batch is still applied).
        self.numbers_checked_per_item = numbers_checked_per_item

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS or path.startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        delivery = path.startswith(_DELIVERY_PREFIX)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._refuse(send, 413, self._too_large(int(declared)), delivery)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body"))
            if len(body) > self.max_body_bytes:
                await self._refuse(send, 413, self._too_large(len(body)), delivery)
                return
        if body:
            content_type = headers.get("content-type", "")
            if not delivery and not is_json_content_type(content_type):
                shown = content_type or "none"
                detail = f"Content-Type must be application/json, got {shown!r}"
                await self._refuse(send, 415, detail, delivery)
                return
            if json_depth(bytes(body)) > self.max_json_depth:
                detail = f"JSON nested deeper than {self.max_json_depth} levels"
                await self._refuse(send, 400, detail, delivery)
                return
            number = None if path in self.numbers_checked_per_item else non_finite_number(bytes(body))
            if number is not None:
                detail = f"JSON numbers must be finite, got {number}"
                await self._refuse(send, 400, detail, delivery)
                return
        await self.app(scope, _replay(bytes(body), receive), send)

    def _too_large(self, size: int) -> str:
        return f"body of {size} bytes exceeds the limit of {self.max_body_bytes} bytes"

    async def _refuse(self, send: Send, status: int, detail: str, delivery: bool) -> None:
        if delivery:
            log.warning("pub/sub message dropped: %s", detail)
            status, payload = 200, {"status": "DROP"}
        else:
            payload = {"detail": detail}
        body = json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body already read, then the client's own messages (a disconnect, when it comes)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
