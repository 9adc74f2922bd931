"""parse_go_duration reads every spelling Dapr resources and the Python SDK produce."""

from __future__ import annotations

import pytest

from localdapr.durations import parse_go_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15s", 15.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1h", 3600.0),
        ("2us", 2e-6),
        ("2µs", 2e-6),  # U+00B5 micro sign, as Go documents it
        ("2μs", 2e-6),  # U+03BC Greek mu, as the Python SDK writes it
        ("3ns", 3e-9),
        ("0", 0.0),
        ("0s", 0.0),
        ("1.5h", 5400.0),
        (".5s", 0.5),
        ("1h2m3s4ms", 3723.004),
        ("0h0m5s0ms0μs", 5.0),  # the SDK's long form
        ("-1m", -60.0),
        ("+2s", 2.0),
        (" 10s ", 10.0),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


def test_bare_integer_is_seconds() -> None:
    # Not Go syntax, but components-contrib's metadata decoder reads it as whole seconds.
    assert parse_go_duration("30") == 30.0


@pytest.mark.parametrize("text", ["", "   ", "s", "1.5", "15sec", "1d", "1m30", "m1", "5 s", "1s-2s"])
def test_rejects_what_go_rejects(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_go_duration(text)
    assert repr(text) in str(info.value)  # the message names the offending text
