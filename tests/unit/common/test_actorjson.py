"""ActorSerializer decodes as the SDK's DefaultJSONSerializer does, for what orjson reads and
for what it leaves to the SDK."""

from __future__ import annotations

import json
from typing import Any

import pytest
from dapr.serializers import DefaultJSONSerializer

from apps.common.actorjson import ActorSerializer

SDK = DefaultJSONSerializer()
FAST = ActorSerializer()

SAME = [
    # an Ingest argument: a JSON string holding JSON (the equipment app's calls)
    json.dumps(json.dumps([{"seq": 1, "ts": "2026-11-30T10:00:00Z", "sensors": [518.67, 1.3e-5]}])).encode(),
    # a reminder's body, as the sidecar sends it
    b'{"data":"InNpbGVuY2Ui","dueTime":"0h0m30s","period":"0h0m30s"}',
    # dates and durations read as the SDK reads them, in lists and objects, never as keys
    b'{"2026-01-02":["2026-01-02T03:04:05.123Z","1h","5m3s","12ms","7us","h","2026/01/02"]}',
    b'["2026/01/02 x"]',  # starts like a date, is none: the SDK's ParserError
    b'"2026-11-30"',
    b'[1, -0.0, 1e308, 123456789012345678, true, null, "", "\\u00e9\\ud83d\\ude00"]',
    b'{"a":1,"b":{"c":[{"d":"e"}]},"a":2}',
    '["caf\u00e9", 1.5]',  # str input
    b"\xef\xbb\xbf[1]",  # a byte-order mark: the SDK's decoder takes it
    '{"x": 1}'.encode("utf-16"),
    b"[NaN, Infinity, -Infinity]",
    b"[12345678901234567890123]",  # past 64 bits: an int, not a float
    b'["\\ud800"]',  # a lone surrogate escape
    b"",
    b"{",
    b"[1,]",
    b"\xff",
]


def _outcome(serializer: DefaultJSONSerializer, data: Any) -> Any:
    try:
        value = serializer.deserialize(data)
    except Exception as exc:  # the same exception type for what neither reads
        return type(exc)
    return (type(value), repr(value))


@pytest.mark.parametrize("data", SAME)
def test_same_values_as_the_sdk(data: Any) -> None:
    assert _outcome(FAST, data) == _outcome(SDK, data)


def test_custom_hook_and_encoding_are_the_sdks() -> None:
    data = b'{"when":"2026-11-30T10:00:00Z"}'
    assert FAST.deserialize(data, object, lambda o: ("hooked", o)) == SDK.deserialize(
        data, object, lambda o: ("hooked", o)
    )
    value = {"s": "caf\u00e9", "n": [1, 2.5]}
    assert FAST.serialize(value) == SDK.serialize(value)
    with pytest.raises(ValueError, match="str or bytes"):
        FAST.deserialize(123)  # type: ignore[arg-type]


def test_calls_and_reminders_decoded_without_the_sdks_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = [SDK.deserialize(data) for data in SAME[:3]]

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("went to the SDK's decoder")

    monkeypatch.setattr(DefaultJSONSerializer, "deserialize", refuse)
    assert [FAST.deserialize(data) for data in SAME[:3]] == expected


ENCODED = [
    "".join(chr(c) for c in range(128)),  # every ASCII character, control characters and DEL included
    "".join(chr(c) for c in range(127)),  # the same without DEL: orjson's bytes
    json.dumps({"v": 3, "window": {"snap": "p3:eJzL" * 300, "tail": "x\\/y"}, "text": 'a "quoted" \\ path'}),
    "",
    "caf\u00e9 \u2603",  # not ASCII: the SDK's \uXXXX escapes
    "\ud800",  # a lone surrogate: the SDK's
    {"s": "caf\u00e9", "n": [1, 2.5], "when": None},
    b"raw bytes",
    [1, "two", 3.0],
    None,
]


@pytest.mark.parametrize("value", ENCODED)
def test_encodes_the_same_bytes_as_the_sdk(value: Any) -> None:
    assert FAST.serialize(value) == SDK.serialize(value)
    assert FAST.deserialize(FAST.serialize(value)) == SDK.deserialize(SDK.serialize(value))
