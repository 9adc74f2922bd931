"""Fixtures shared by the equipment actor's unit tests."""

from __future__ import annotations

import pytest

from apps.equipment import actor as actor_module


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(actor_module.time, "time", lambda: now[0])
    return now
