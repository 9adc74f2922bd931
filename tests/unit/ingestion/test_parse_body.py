"""The readings body is decoded by orjson when it can and by json otherwise: the same values as
json.loads for every body, and the same 400 message for one that is not JSON."""

from __future__ import annotations

import json
import math

import pytest

from apps.ingestion.service import parse_json

SAME_AS_JSON = {
    "a reading": b'[{"equipment_id":"e-1","seq":3,"timestamp":"2026-01-01T00:00:00Z","values":{"s":641.82}}]',
    "an envelope": b'{"readings": [{"seq": 1, "values": {"s": -0.0, "t": 1e-7, "u": 12345678901234567}}]}',
    "NaN and Infinity literals": b'[{"values": {"s": NaN, "t": Infinity, "u": -Infinity}}]',
    "a number too large for a float": b'[{"values": {"s": 1e400}}]',
    "an integer past 64 bits": b'[{"seq": 123456789012345678901234567890}]',
    "an integer just past 64 bits": b'[{"seq": 18446744073709551616}]',
    "an integer just below -2**63": b'[{"seq": -9223372036854775809}]',
    "the largest 64-bit integers": b"[9223372036854775807, 18446744073709551615, -9223372036854775808]",
    "a byte-order mark": b"\xef\xbb\xbf[1]",
    "UTF-16": '[{"equipment_id": "e"}]'.encode("utf-16"),
    "a lone surrogate escape": b'[{"equipment_id": "\\ud800"}]',
    "non-ASCII text": '[{"equipment_id": "pompe-é", "note": "✗"}]'.encode(),
    "a duplicate key": b'[{"seq": 1, "seq": 2}]',
}


def _same(a: object, b: object) -> bool:
    # NaN is not equal to itself: compare the decoded values by their repr.
    return repr(a) == repr(b) and type(a) is type(b)


@pytest.mark.parametrize("case", list(SAME_AS_JSON))
def test_every_body_decodes_to_what_json_loads_gives(case: str) -> None:
    body = SAME_AS_JSON[case]
    assert _same(parse_json(body), json.loads(body))


def test_non_finite_literals_still_arrive_as_floats_for_the_per_reading_rejection() -> None:
    values = parse_json(SAME_AS_JSON["NaN and Infinity literals"])[0]["values"]
    assert math.isnan(values["s"]) and values["t"] == math.inf and values["u"] == -math.inf


@pytest.mark.parametrize("body", [b'[{"equipment_id": ', b"[1,]", b"{'a': 1}", b"", b"[1] x"])
def test_text_that_is_not_json_is_named_as_json_names_it(body: bytes) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(body)
    with pytest.raises(ValueError, match="malformed JSON") as got:
        parse_json(body)
    e = expected.value
    assert str(got.value) == f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno}"


def test_bytes_that_are_no_text_are_named_as_such() -> None:
    with pytest.raises(ValueError, match="malformed JSON: not UTF-8"):
        parse_json(b"4\x83\xd9f\xc2\xadA\x04")
