"""`make bench`: every benchmark in turn, each in its own interpreter (so one bench's sidecars,
threads and imports cannot skew the next), stopping at the first that fails.

    python -m bench.run_all [--quick]     --quick: the pipeline bench sends fewer readings
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAST = "bench.bench_pipeline"  # the longest (it starts the whole platform): the others report first


def benches() -> list[str]:
    """Every bench/bench_*.py, so a new benchmark is part of `make bench` without editing this file."""
    found = sorted(f"bench.{p.stem}" for p in (REPO / "bench").glob("bench_*.py"))
    return sorted(found, key=lambda m: m == LAST)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for module in benches():
        extra = ["--quick"] if args.quick and module == LAST else []
        print(f"\n===== {module} {' '.join(extra)}".rstrip(), flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, "-m", module, *extra], cwd=REPO)
        print(f"===== {module}: exit {code} in {time.perf_counter() - started:.0f} s", flush=True)
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
