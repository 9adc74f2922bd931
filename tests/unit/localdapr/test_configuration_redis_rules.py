"""configuration.redis's pure rules: contrib's `value||version` layout and the keyspace event flags."""

from __future__ import annotations

import pytest

from localdapr.configuration.base import ConfigurationItem
from localdapr.configuration.redis import missing_event_flags, parse_value


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("100||3", ("100", "3")),
        ("100", ("100", "")),
        ("a||b||c", ("a", "b")),
        ("||1", ("", "1")),
        ("", ("", "")),
    ],
)
def test_value_and_version(raw: str, parsed: tuple[str, str]) -> None:
    assert parse_value(raw) == parsed


@pytest.mark.parametrize(
    ("current", "missing"),
    [("", "Kg$xe"), ("Ex", "Kg$e"), ("KA", ""), ("KEA", ""), ("A", "K"), ("Kg$xe", ""), ("Elh", "Kg$xe")],
)
def test_keyspace_flags_added_to_what_is_set(current: str, missing: str) -> None:
    assert missing_event_flags(current) == missing


def test_item_json_leaves_out_empty_fields_as_go_omitempty() -> None:
    assert ConfigurationItem("v", "1", {"m": "x"}).to_json() == {
        "value": "v",
        "version": "1",
        "metadata": {"m": "x"},
    }
    assert ConfigurationItem("v").to_json() == {"value": "v"}
    assert ConfigurationItem().to_json() == {}
