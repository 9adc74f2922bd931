"""The sidecars' process sets its garbage collector once they are up (`localdapr up`, `localdapr sidecar`)."""

from __future__ import annotations

import gc
import weakref

from localdapr.launch.launcher import tune_garbage_collector


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_garbage_goes_first_then_the_threshold_rises_and_the_rest_is_frozen() -> None:
    before = gc.get_threshold()
    cycle = Cycle()
    freed = weakref.ref(cycle)
    del cycle
    try:
        tune_garbage_collector(40_000)
        assert freed() is None, "garbage was frozen instead of freed"
        assert gc.get_threshold() == (40_000, *before[1:])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
