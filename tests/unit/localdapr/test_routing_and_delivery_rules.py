"""Pure rules of pub/sub delivery: routing expressions and how an app's answer is read."""

from __future__ import annotations

import pytest

from localdapr.pubsub.delivery import DROP, RETRY, SUCCESS, outcome_of
from localdapr.pubsub.routing import Rule, RuleError

EVENT = {
    "type": "vibration",
    "source": "pump-7",
    "data": {"level": 5, "kind": "alpha", "tags": {"site": "north"}},
}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('event.type == "vibration"', True),
        ('event.type != "vibration"', False),
        ("event.data.level > 3 && event.data.level <= 5", True),
        ('event.data.kind == "beta" || event.data.level >= 5', True),
        ('!(event.data.kind == "alpha")', False),
        ('event.data.tags.site == "north"', True),
        ('event.data.missing == "x"', False),
        ("event.data.missing > 3", False),
        ('event.source.startsWith("pump")', True),
        ('event.source.endsWith("-8")', False),
        ('event.type.contains("brat")', True),
        ('event.type == "a && b"', False),  # operators inside strings are not translated
    ],
)
def test_rule_matching(expr: str, expected: bool) -> None:
    assert Rule(expr).matches(EVENT) is expected


@pytest.mark.parametrize("expr", ["__import__('os')", "event.type == x", "lambda: 1", "event.type = 1"])
def test_unsafe_or_unknown_rules_are_refused(expr: str) -> None:
    with pytest.raises(RuleError):
        Rule(expr)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b"", SUCCESS),
        (204, b"", SUCCESS),
        (200, b"not json", SUCCESS),
        (200, b'{"status": "SUCCESS"}', SUCCESS),
        (200, b'{"status": ""}', SUCCESS),
        (200, b'{"other": 1}', SUCCESS),
        (200, b'{"status": "RETRY"}', RETRY),
        (200, b'{"status": "DROP"}', DROP),
        (200, b'{"status": "success"}', RETRY),  # status strings are upper-case exactly
        (404, b"", DROP),
        (422, b"{}", RETRY),
        (500, b'{"status": "SUCCESS"}', RETRY),
    ],
)
def test_outcome_of_app_answer(status: int, body: bytes, expected: str) -> None:
    assert outcome_of(status, body) == expected
