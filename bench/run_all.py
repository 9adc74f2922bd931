"""`make bench`: every benchmark in turn, each in its own interpreter (so one bench's sidecars,
threads and imports cannot skew the next), stopping at the first that fails.

    python -m bench.run_all [--quick]     --quick: the pipeline bench sends a quarter of the readings
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCHES: list[tuple[str, list[str]]] = [
    ("bench.bench_inference", []),
    ("bench.bench_sidecar", []),
    ("bench.bench_pipeline", []),
]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for module, extra in BENCHES:
        if args.quick and module == "bench.bench_pipeline":
            extra = [*extra, "--quick"]
        print(f"\n===== {module} {' '.join(extra)}".rstrip(), flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", module, *extra], cwd=REPO)
        print(f"===== {module}: exit {code} in {time.perf_counter() - started:.0f} s", flush=True)
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
