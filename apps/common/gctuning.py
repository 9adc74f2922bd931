"""The garbage collector of an app process, set once the app has started.

An app's cyclic collector runs every 700 allocations by default (Python's young-generation
threshold), and every so often it walks every object the process holds: the modules, the framework,
the model, the fleet's state. Serving a request allocates thousands of short-lived objects, so under
load the collector ran hundreds of times a second and walked the whole heap a few times a minute: in
the pipeline benchmark (1,000 machines) it took 1-10% of an app's CPU (ingestion 9.9%).
"""

from __future__ import annotations

import gc
from typing import Final

# Allocations between two young collections. Young cycles are still collected, only in bigger
# batches; what survives is what the app keeps anyway.
GC_YOUNG_THRESHOLD: Final = 50_000

_tuned = False


def tune_garbage_collector(young_threshold: int = GC_YOUNG_THRESHOLD) -> bool:
    """Collect young garbage less often, and never walk again what is alive when the app has started
    (it lives as long as the process): `gc.freeze` moves it out of every later collection. Garbage is
    collected first, so none of it is kept for good.

    Once per process (False afterwards): a process that starts apps again and again, as tests do in
    process, keeps only what was alive the first time out of the collector's reach.
    """
    global _tuned
    if _tuned:
        return False
    _tuned = True
    gc.collect()
    gc.set_threshold(young_threshold, *gc.get_threshold()[1:])
    gc.freeze()
    return True
