"""An app process's garbage collector, set once the app has started (apps/common/gctuning.py)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from apps.common import gctuning


@pytest.fixture
def untuned(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # This test process may have started an app already (tests run lifespans in process): start from
    # a process that has not tuned, and give back the collector as it was.
    monkeypatch.setattr(gctuning, "_tuned", False)
    before = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_young_threshold_is_raised_and_what_is_alive_is_frozen(untuned: None) -> None:
    middle_and_old = gc.get_threshold()[1:]
    alive = [[n] for n in range(1_000)]  # lists are tracked by the collector
    frozen = gc.get_freeze_count()
    assert gctuning.tune_garbage_collector(12_345)
    assert gc.get_threshold() == (12_345, *middle_and_old)
    assert gc.get_freeze_count() >= frozen + len(alive)


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector can free it


def test_garbage_is_collected_before_the_freeze(untuned: None) -> None:
    node = Node()
    freed = weakref.ref(node)
    del node  # garbage now, until a collection finds it
    gctuning.tune_garbage_collector()
    # Frozen garbage would never be freed: the cycle must be gone, not frozen.
    assert freed() is None


def test_only_the_first_call_in_a_process_tunes(untuned: None) -> None:
    assert gctuning.tune_garbage_collector(20_000)
    assert not gctuning.tune_garbage_collector(30_000)
    assert gc.get_threshold()[0] == 20_000
