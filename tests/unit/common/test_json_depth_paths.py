"""json_depth masks strings by quote parity when a body has no backslash and paired quotes, and by the
regular expression otherwise: both give what removing the strings with the expression gives."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from apps.common.httpguard import _STEP, _STRING, json_depth


def by_expression(body: bytes) -> int:
    """json_depth as it was: the strings removed by the regular expression, then the brackets."""
    data = _STRING.sub(b"", body)
    if data.count(b"[") + data.count(b"{") <= 1:
        return 1 if (b"[" in data or b"{" in data) else 0
    steps = _STEP[np.frombuffer(data, dtype=np.uint8)]
    steps = steps[steps != 0]
    return int(np.cumsum(steps, dtype=np.int32).max(initial=0))


def test_random_fragments_give_the_same_depth_either_way() -> None:
    rng = random.Random(13)
    alphabet = [b"[", b"]", b"{", b"}", b'"', b'"', b"\\", b"a", b"1", b",", b":", b" "]
    for _ in range(3000):
        body = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert json_depth(body) == by_expression(body), body


@pytest.mark.parametrize(
    "body",
    [
        json.dumps({"readings": [{"equipment_id": "e-[1]", "values": {"s": 1.5}}] * 50}).encode(),
        b'["{", "}", ["]"]]',  # brackets in strings, paired quotes, no backslash
        b'[["a"]] "',  # an unpaired quote: the expression's reading
        b'["a\\"[", [[]]]',  # an escaped quote
        b"",
        b'"just a string"',
    ],
)
def test_bodies_give_the_same_depth_either_way(body: bytes) -> None:
    assert json_depth(body) == by_expression(body)
