"""Silence checks of a fleet that reports slowly: checks per second and CPU, window by window.

    python -m bench.bench_silence_checks [--machines 3000] [--rate 50] [--seconds 420] [--window 30]

Starts the embedded platform as `bench_pipeline` does (sidecars as threads of this process, each app a
process), warms `--machines` simulated FD001 machines past their window, then sends one reading per
request at `--rate` readings/s, round robin over the fleet (each machine one reading every
machines / rate seconds), for `--seconds`. Every `--window` seconds it prints the silence checks the
equipment app answered per second (the reminder calls its GET /metrics counts) and the CPU used, as a
share of one core: the equipment app, its sidecar, and every app and sidecar together. With the
default 30 s check and the profile's 300 s silence threshold, a check that finds its machine calm
puts the next one off until the machine could turn silent, so after the first period the checks of a
calm fleet fall to about one per machine per threshold. The plot is saved to
`bench/results/silence_checks.png`.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.bench_pipeline import RESULTS, WARM_GROUP, WARMUP, cpu_by_hop, drive, reminder_calls
from localdapr.launch.launcher import tune_garbage_collector
from tests.e2e.platform import start_platform, wait_model_ready, write_components


def sample(platform: Any) -> tuple[float, float, dict[str, float]]:
    return time.perf_counter(), reminder_calls(platform), cpu_by_hop(platform)


def windows(
    platform: Any, every: float, until: threading.Event
) -> tuple[list[dict[str, float]], dict[str, float]]:
    """One row per `every` seconds until `until` is set (checks/s and CPU shares over the window), and
    the CPU seconds of each hop over them all."""
    rows: list[dict[str, float]] = []
    start = last = sample(platform)
    while not until.wait(every):
        now = sample(platform)
        seconds = now[0] - last[0]
        cpu = {k: (now[2][k] - last[2].get(k, 0.0)) / seconds for k in now[2]}
        rows.append(
            {
                "elapsed": now[0] - start[0],
                "checks": (now[1] - last[1]) / seconds,
                "equipment app": cpu.get("equipment app", 0.0),
                "equipment sidecar": cpu.get("equipment sidecar", 0.0),
                "all": sum(cpu.values()),
            }
        )
        print(
            f"| {rows[-1]['elapsed']:.0f} | {rows[-1]['checks']:.1f} | {rows[-1]['equipment app']:.0%} | "
            f"{rows[-1]['equipment sidecar']:.0%} | {rows[-1]['all']:.0%} |",
            flush=True,
        )
        last = now
    return rows, {k: last[2][k] - start[2].get(k, 0.0) for k in last[2]}


def save_plot(rows: list[dict[str, float]], title: str, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    elapsed = [r["elapsed"] for r in rows]
    fig, checks = plt.subplots(figsize=(8, 4))
    checks.plot(elapsed, [r["checks"] for r in rows], color="tab:blue", marker="o")
    checks.set_xlabel("seconds of steady load")
    checks.set_ylabel("silence checks per second", color="tab:blue")
    cpu = checks.twinx()
    cpu.plot(elapsed, [100 * r["all"] for r in rows], color="tab:red", marker="s")
    cpu.set_ylabel("CPU, % of one core (apps + sidecars)", color="tab:red")
    checks.set_title(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--machines", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=50.0, help="readings/s offered, one per request")
    parser.add_argument("--seconds", type=float, default=420.0)
    parser.add_argument("--window", type=float, default=30.0)
    args = parser.parse_args()
    if args.machines < 1 or args.rate <= 0 or args.seconds <= 0 or args.window <= 0:
        parser.error("--machines, --rate, --seconds and --window must be positive")
    with tempfile.TemporaryDirectory() as tmp:
        components = write_components(Path(tmp) / "components", "embedded")
        print("... starting the platform and training a first model", flush=True)
        platform = start_platform(components, Path(tmp), {"VIGIL_TRAINING_N_ESTIMATORS": "60"})
        try:
            wait_model_ready(platform)
            tune_garbage_collector()
            fleet = {"url": platform.url("ingestion"), "machines": args.machines, "prefix": "s-", "seed": 3}
            print(f"... {args.machines:,} machines: warm-up", flush=True)
            drive({**fleet, "phase": "warm", "group": WARM_GROUP, "cycles": WARMUP, "first_seq": 1})
            print(
                f"... {args.rate:,.0f} readings/s for {args.seconds:,.0f} s (each machine every "
                f"{args.machines / args.rate:,.0f} s)\n",
                flush=True,
            )
            print("| s | silence checks/s | equipment app CPU | its sidecar CPU | all apps + sidecars CPU |")
            print("|---:|---:|---:|---:|---:|")
            done = threading.Event()
            result: dict[str, Any] = {}

            def load() -> None:
                try:
                    steady = {"phase": "open", "rate": args.rate, "seconds": args.seconds}
                    result.update(drive({**fleet, **steady, "first_seq": WARMUP + 1}))
                finally:
                    done.set()

            driver = threading.Thread(target=load, name="load")
            driver.start()
            rows, hops = windows(platform, args.window, done)
            driver.join()
        finally:
            platform.stop()
    print(
        f"\nsent {result.get('sent', 0):,}, accepted {result.get('accepted', 0):,}, "
        f"rejected {result.get('rejected', 0):,}, not sent (too many in flight) {result.get('dropped', 0):,}"
    )
    accepted = max(int(result.get("accepted", 0)), 1)
    print("\n| CPU ms per reading over the windows (per hop) | ms |\n|---|---:|")
    for hop, seconds in sorted(hops.items(), key=lambda item: -item[1]):
        print(f"| {hop} | {seconds * 1000 / accepted:.2f} |")
    print(f"| total | {sum(hops.values()) * 1000 / accepted:.2f} |")
    title = f"{args.machines:,} machines, {args.rate:,.0f} readings/s"
    plot = save_plot(rows, title, RESULTS / "silence_checks.png")
    if plot is not None:
        print(f"plot: {plot.relative_to(Path.cwd()) if plot.is_relative_to(Path.cwd()) else plot}")


if __name__ == "__main__":
    main()
