"""The equipment pipeline end to end through the platform: readings/s, latency from ingestion accept
to the actor's health update, CPU per 10k readings, and the actor's feature time per reading.

    python -m bench.bench_pipeline [--machines 100 1000] [--batches 1 100 1000] [--quick]

The platform is started the way the end-to-end tests start it (tests/e2e/platform.py, reused rather
than copied): every app of dapr.yaml as its own process, each with a localdapr sidecar in this
process, embedded profile (SQLite state, in-memory pub/sub) in a temp folder. Readings come from
`vigil simulate` fleets (real FD001 trajectories with noise) through the same streaming code as
`vigil replay`, one request at a time, unpaced.

Per cell (machines x batch size) a fixed number of readings is sent, after every machine has been
warmed up past its 30-reading window (so each measured reading is featurised and predicted, the
steady state); that bounds the whole run to a few minutes.
- latency: per reading, from sending its request to ingestion's answer, which carries the machine's
  new health: by then the actor has applied the reading, predicted and saved its state, so that is
  when the health update is done (p50 / p99 over the readings of the cell). The health's own
  `updated_at` is stamped when the actor call starts, so `updated_at - sent` is shown beside it as
  "to actor": the time a reading waits in ingestion (validation, the per-batch actor-call limit);
- CPU: user + system seconds of the app processes (/proc/<pid>/stat) and of the sidecar threads (this
  process's CPU minus the streaming thread's own), scaled to 10k readings.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from apps.common import cmapss
from apps.common.features import offline_features, online_features
from apps.common.profiles import TURBOFAN
from tests.e2e.platform import Platform, start_platform, wait_model_ready, write_components
from vigil.fleet import Fleet, Machine, simulated_fleet
from vigil.stream import BatchResult, IngestClient, PlannedRequest, StderrProgress, stream

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
WARMUP_CYCLES = TURBOFAN.window  # readings before a machine's first prediction
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def readings_per_cell(batch: int, quick: bool) -> int:
    """Enough readings for a stable rate at each batch size, few enough for batch 1 (one reading per
    round trip) to stay short; the 100-machine fleet must not run out of FD001 cycles (>= 128)."""
    n = {1: 200, 100: 2000, 1000: 5000}.get(batch, max(200, min(5000, 5 * batch)))
    return max(batch, n // 4) if quick else n


# ---------------------------------------------------------------------------------------------- CPU
def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc (Linux); NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class CpuSample:
    apps: float
    sidecars: float

    @classmethod
    def take(cls, platform: Platform) -> CpuSample:
        apps = sum(proc_cpu_seconds(a.process.proc.pid) for a in platform.apps.values() if a.process.proc)
        # The sidecars are threads of this process; the streaming client is this (main) thread.
        return cls(apps, time.process_time() - time.thread_time())


# ------------------------------------------------------------------------------------------- cells
@dataclass
class Cell:
    machines: int
    batch: int
    readings: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # accept -> health updated, saved, answered
    to_actor: list[float] = field(default_factory=list)  # accept -> the actor starts on the machine
    cpu_apps: float = 0.0
    cpu_sidecars: float = 0.0
    rejected: int = 0

    @property
    def rate(self) -> float:
        return self.readings / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(q * len(data)))] * 1000 if data else float("nan")

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) * 1000 if self.latencies else float("nan")

    def cpu_per_10k(self, which: float) -> float:
        return which * 10_000 / self.readings if self.readings else float("nan")


def window(fleet: Fleet, first_cycle: int, cycles: int) -> Fleet:
    """The same machines, cycles [first_cycle, first_cycle + cycles) only (seq stays the real cycle)."""
    return Fleet(
        tuple(
            Machine(m.equipment_id, m.unit, m.trajectory[first_cycle : first_cycle + cycles])
            for m in fleet.machines
        ),
        fleet.profile,
    )


def run_fleet(platform: Platform, machines: int, batches: list[int], quick: bool) -> list[Cell]:
    url = platform.url("ingestion")
    fleet = simulated_fleet(
        cmapss.load_train(), machines, seed=machines, max_shift=0, prefix=f"bench{machines}-"
    )
    cells: list[Cell] = []
    with IngestClient(url, timeout=300) as client:
        print(f"... {machines} machines: warm-up, {WARMUP_CYCLES} cycles each", flush=True)
        warm = stream(
            window(fleet, 0, WARMUP_CYCLES),
            client,
            batch_size=min(1000, 50 * WARMUP_CYCLES),
            reporter=StderrProgress(),
        )
        if warm.accepted != warm.sent:
            raise SystemExit(f"warm-up: the platform did not apply every reading:\n{warm.summary()}")
        cycle = WARMUP_CYCLES
        for batch in batches:
            target = readings_per_cell(batch, quick)
            cycles = math.ceil(target / machines)
            cell = Cell(machines, batch)
            stop = threading.Event()

            def on_result(
                planned: PlannedRequest,
                result: BatchResult,
                cell: Cell = cell,
                target: int = target,
                stop: threading.Event = stop,
            ) -> None:
                per_machine: dict[str, int] = {}
                for r in planned.readings:
                    per_machine[r["equipment_id"]] = per_machine.get(r["equipment_id"], 0) + 1
                done = result.received_at - result.sent_at
                for eid, n in per_machine.items():
                    health = result.health.get(eid)
                    if health is None:
                        continue  # not applied (rejected): counted, not timed
                    cell.latencies.extend([done] * n)
                    cell.to_actor.extend([_epoch(health["updated_at"]) - result.sent_at] * n)
                cell.readings += len(planned.readings)
                if cell.readings >= target:
                    stop.set()

            print(f"... {machines} machines, batch {batch}: {target} readings", flush=True)
            before, t0 = CpuSample.take(platform), time.perf_counter()
            progress = stream(
                window(fleet, cycle, cycles), client, batch_size=batch, stop=stop, on_result=on_result
            )
            cell.seconds = time.perf_counter() - t0
            after = CpuSample.take(platform)
            cell.cpu_apps, cell.cpu_sidecars = after.apps - before.apps, after.sidecars - before.sidecars
            cell.rejected = progress.rejected
            cycle += cycles
            cells.append(cell)
    return cells


def _median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# ---------------------------------------------------------------------------------- feature timing
def feature_timing(repeats: int = 20_000) -> list[tuple[str, float]]:
    """Microseconds per reading of the actor's feature computation, called directly."""
    traj = cmapss.sensor_matrix(cmapss.load_train()[1], TURBOFAN)
    w = TURBOFAN.window
    win = np.ascontiguousarray(traj[:w])
    rows: list[tuple[str, float]] = []

    def med(call, n: int) -> float:  # type: ignore[no-untyped-def]
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    rows.append(
        ("online_features (one window)", med(lambda: online_features(win, float(w), TURBOFAN), repeats) * 1e6)
    )
    for k in (1, 10, 100):
        block = traj[: w - 1 + k]
        ages = np.arange(1, w + k, dtype=np.float64)
        t = med(
            lambda block=block, ages=ages: offline_features(block, TURBOFAN, ages=ages),
            max(repeats // k, 200),
        )
        rows.append((f"actor batch path, {k} new reading(s)", t / k * 1e6))
    return rows


# ------------------------------------------------------------------------------------------ output
def print_table(cells: list[Cell]) -> None:
    print(
        "| machines | batch | readings | readings/s | p50 ms | p99 ms | p50 ms to actor | "
        "CPU s/10k apps | CPU s/10k sidecars | CPU s/10k total |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for c in cells:
        apps, sidecars = c.cpu_per_10k(c.cpu_apps), c.cpu_per_10k(c.cpu_sidecars)
        print(
            f"| {c.machines:,} | {c.batch:,} | {c.readings:,} | {c.rate:,.0f} | {c.p50:.1f} | "
            f"{c.pct(0.99):.1f} | {_median_ms(c.to_actor):.1f} | {apps:.2f} | {sidecars:.2f} | "
            f"{apps + sidecars:.2f} |"
        )
    rejected = sum(c.rejected for c in cells)
    if rejected:
        print(f"\n{rejected} reading(s) rejected during the run: see the apps' logs")


def save_plot(cells: list[Cell], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot; `pip install -e '.[dev]'`)")
        return None
    fig, (ax_rate, ax_lat) = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, machines in enumerate(sorted({c.machines for c in cells})):
        mine = [c for c in cells if c.machines == machines]
        xs = [c.batch for c in mine]
        color = f"C{i}"  # one colour per fleet size; p99 dashed beside its p50
        ax_rate.plot(xs, [c.rate for c in mine], marker="o", color=color, label=f"{machines:,} machines")
        ax_lat.plot(xs, [c.p50 for c in mine], marker="o", color=color, label=f"p50, {machines:,} machines")
        ax_lat.plot(
            xs,
            [c.pct(0.99) for c in mine],
            marker="x",
            linestyle="--",
            color=color,
            label=f"p99, {machines:,} machines",
        )
    for ax in (ax_rate, ax_lat):
        ax.set_xscale("log")
        ax.set_xlabel("readings per request (batch)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax_rate.set_yscale("log")
    ax_rate.set_ylabel("readings / s")
    ax_rate.set_title("throughput, ingestion to actor")
    ax_lat.set_yscale("log")
    ax_lat.set_ylabel("ms")
    ax_lat.set_title("latency, ingestion accept to actor health update")
    fig.suptitle("Vigil equipment pipeline through localdapr (embedded profile)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--machines", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--quick", action="store_true", help="a quarter of the readings per cell")
    args = parser.parse_args()

    features = feature_timing()
    cells: list[Cell] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        components = write_components(Path(tmp) / "components", "embedded")
        print(
            "... starting the platform (every app + localdapr sidecar) and training a first model", flush=True
        )
        env = {"VIGIL_TRAINING_N_ESTIMATORS": "60"}
        platform = start_platform(components, Path(tmp), env)
        try:
            wait_model_ready(platform)
            for machines in args.machines:
                cells += run_fleet(platform, machines, args.batches, args.quick)
        except BaseException:
            print(platform.logs()[-6000:])
            raise
        finally:
            platform.stop()
    print(
        f"\npipeline benchmark ({time.perf_counter() - started:.0f} s): one request at a time into "
        "ingestion; latency per reading = request sent to ingestion's answer with the actor's updated "
        "health; embedded profile, "
        f"{os.cpu_count()} CPU(s)\n"
    )
    print_table(cells)
    print("\n| actor feature computation | µs per reading (median) |\n|---|---:|")
    for name, micros in features:
        print(f"| {name} | {micros:.1f} |")
    plot = save_plot(cells, RESULTS / "pipeline.png")
    if plot is not None:
        print(f"\nplot: {plot.relative_to(REPO)}")


if __name__ == "__main__":
    main()
