"""The equipment pipeline end to end through the platform: the scenarios of the performance targets
(README, "Benchmarks"), on the embedded profile and, when Redis answers, the Redis profile beside it.

    python -m bench.bench_pipeline [--quick] [--profiles embedded redis] [--scale-machines 10000] [--py-spy]
    python -m bench.bench_pipeline --scale-only [--scale-machines 10000] [--idle-timeout 600]
    python -m bench.bench_pipeline --only batched [--quick] [--profiles embedded] [--py-spy]

The platform is started the way the end-to-end tests start it (tests/e2e/platform.py): every app of
dapr.yaml as its own process, each with a localdapr sidecar as a thread of this process. Load comes
from bench/load.py in a process of its own (simulated FD001 machines, warmed past their 30-reading
window first, so every measured reading is featurised, predicted and saved: the steady state).
- 1,000 x 1: one reading per request, 64 requests in flight, as fast as the platform answers
  (readings/s and CPU per 10k readings: apps from /proc/<pid>/stat, sidecars from this process's
  threads); then 1,000 readings/s offered open-loop, p99 from planned send to the answer carrying the
  machine's updated health;
- 100 x 50: requests of 5,000 readings (100 machines x 50 consecutive ones), one at a time;
- actor call vs plain HTTP to the same app (bench.bench_actors' app), without and with a state save;
- 10,000 machines warmed up, on a platform of their own: the equipment app's RSS and the actor
  state's bytes per machine; then idle deactivation (actors active, RSS) and the latency of a
  deactivated machine's next reading (its actor activated again from the store);
- per hop: CPU ms per reading of each app and each sidecar thread during the 1,000 x 1 run and
  during the 100 x 50 run.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from apps.common.contracts import MAX_BATCH_READINGS
from apps.common.profiles import TURBOFAN
from bench.bench_actors import run_backend
from bench.bench_sidecar import REDIS_HOST, redis_up
from bench.common import process_cpu_seconds, stat_cpu_seconds
from localdapr.launch.launcher import tune_garbage_collector
from tests.e2e.platform import Platform, start_platform, wait_model_ready, write_components

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
BENCH_REDIS_DB = 10  # flushed at the start of the Redis run; nothing else uses it
WARMUP = TURBOFAN.window  # readings before a machine's first prediction
STATE_PREFIX = "equipment||EquipmentActor||"
WARM_GROUP = min(100, MAX_BATCH_READINGS // (WARMUP + 1))  # machines per warm-up request, within the limit

# (key, scenario, today per the issue, target)
ROWS: list[tuple[str, str, str, str]] = [
    ("rate_1x1", "1,000 machines x 1 reading per request, sustained, readings/s", "85-333", ">= 2,000"),
    (
        "p99_open",
        "same, p99 send -> answer with updated health at 1,000 readings/s offered, ms",
        "3,800",
        "<= 500",
    ),
    ("rate_open", "  (readings/s achieved while 1,000/s offered)", "", ""),
    ("rate_batch", "100 machines x 50 readings per request (5,000), readings/s", "2,067", ">= 20,000"),
    ("cpu_10k", "CPU s per 10k readings, apps + sidecars, 1,000 x 1", "55", "<= 10"),
    (
        "actor_ratio",
        "actor call through localdapr vs plain HTTP to the same app, p50 ratio",
        "2.0x",
        "<= 1.3x",
    ),
    ("save_ratio", "actor call + state save vs plain HTTP, p50 ratio", "3.6x", "<= 1.8x"),
    ("checks_1x1", "  silence checks the equipment app answered meanwhile (1,100 machines), per s", "", ""),
    ("rss_1k", "1,100 machines active (after 1,000 x 1): equipment app RSS, MiB", "", ""),
    ("state_1k", "  actor state bytes per machine then (~63 readings each)", "", ""),
    # "active": the wording; how many actors were active at once is the `active_peak` row (a
    # warm-up longer than the idle timeout deactivates the first machines before the last ones come).
    ("rss", "{scale:,} machines active: equipment app RSS, MiB", "not measured", "<= 1,536"),
    ("state_bytes", "{scale:,} machines active: actor state bytes per machine", "not measured", "<= 16,384"),
    (
        "rss_per_machine",
        "  equipment RSS growth per machine (over the app before the fleet), KiB",
        "",
        "",
    ),
    ("active_peak", "  actors active in the equipment sidecar then (at once)", "", ""),
    ("rss_per_active", "  equipment RSS growth per actor active then, KiB", "", ""),
    (
        "idle_seconds",
        "  idle deactivation: s after the last reading until 95% were deactivated",
        "",
        "",
    ),
    ("active_idle", "  actors still active then", "", ""),
    ("rss_idle", "  equipment app RSS after idle deactivation, MiB", "", ""),
    ("react_p50", "  next reading of a deactivated machine (reactivation), p50 ms", "", ""),
    ("react_p99", "  same, p99 ms", "", ""),
    ("active_p50", "  the reading after it (actor active), p50 ms", "", ""),
]
# Rows of the scale scenario: "not run" when it was skipped (--scale-machines 0), not a "0 machines" row.
SCALE_ROWS = {
    "rss",
    "state_bytes",
    "rss_per_machine",
    "active_peak",
    "rss_per_active",
    "idle_seconds",
    "active_idle",
    "rss_idle",
    "react_p50",
    "react_p99",
    "active_p50",
}


@dataclass
class ProfileRun:
    profile: str
    values: dict[str, float] = field(default_factory=dict)
    hops: dict[str, float] = field(default_factory=dict)  # CPU ms per reading, 1,000 x 1
    batch_hops: dict[str, float] = field(default_factory=dict)  # CPU ms per reading, 100 x 50
    open_latencies: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- CPU
def cpu_by_hop(platform: Platform) -> dict[str, float]:
    """CPU seconds so far of each app process and each sidecar thread; the rest of this process's
    threads (state-store executors, pub/sub delivery helpers) as one entry."""
    out: dict[str, float] = {}
    for app in platform.apps.values():
        if app.process.proc is not None:
            out[f"{app.app_id} app"] = process_cpu_seconds(app.process.proc.pid)
    sidecars = 0.0
    for app in platform.apps.values():
        tid = app.sidecar.native_id
        out[f"{app.app_id} sidecar"] = stat_cpu_seconds(Path(f"/proc/self/task/{tid}/stat"))
        sidecars += out[f"{app.app_id} sidecar"]
    out["other sidecar-process threads (stores' executors)"] = (
        stat_cpu_seconds(Path("/proc/self/stat")) - sidecars - time.thread_time()
    )
    return out


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_py_spy(platform: Platform, profile: str, seconds: int) -> list[subprocess.Popen[bytes]]:
    """py-spy sampling every app process and this one (the sidecars) for `seconds`, collapsed stacks
    to bench/results/py-spy-<profile>-<process>.txt (flamegraph.pl or speedscope read them)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    targets = {f"{a.app_id}": a.process.proc.pid for a in platform.apps.values() if a.process.proc}
    targets["sidecars"] = os.getpid()
    spy = str(Path(sys.executable).with_name("py-spy"))
    return [
        subprocess.Popen(
            [
                spy,
                "record",
                "--nonblocking",
                "--format",
                "raw",
                "-r",
                "50",
                "-d",
                str(seconds),
                "-p",
                str(pid),
                "-o",
                str(RESULTS / f"py-spy-{profile}-{name}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in targets.items()
    ]


# --------------------------------------------------------------------------------------------- load
def drive(spec: dict[str, Any]) -> dict[str, Any]:
    """Run bench/load.py in its own process; its JSON answer."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        done = subprocess.run(
            [sys.executable, "-m", "bench.load", json.dumps({**spec, "out": out.name})],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"load driver failed ({done.returncode}):\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(Path(out.name).read_text())
    if result["errors"]:
        print(f"    driver errors (first {len(result['errors'])}): {result['errors']}", flush=True)
    return result


def measured(
    platform: Platform, spec: dict[str, Any], concurrency: int, spies: list[subprocess.Popen[bytes]]
) -> tuple[dict[str, Any], dict[str, float]]:
    """A closed-loop drive and the CPU ms per accepted reading of each hop meanwhile (py-spy `spies`,
    if any, sampling it)."""
    before = cpu_by_hop(platform)
    result = drive({**spec, "concurrency": concurrency})
    after = cpu_by_hop(platform)
    for spy in spies:
        spy.wait()
    done = max(result["accepted"], 1)
    return result, {k: (after[k] - before[k]) * 1000 / done for k in after}


def reminder_calls(platform: Platform) -> float:
    """Reminder calls (the machines' silence checks) the equipment app has answered so far, from the
    request count of its GET /metrics."""
    text = httpx.get(f"{platform.url('equipment')}/metrics", timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "vigil_http_requests"
        for sample in family.samples
        if sample.name.endswith("_total") and "/method/remind/" in sample.labels.get("route", "")
    )


def pct(values: list[float], q: float) -> float:
    data = sorted(values)
    return data[min(len(data) - 1, int(q * len(data)))] if data else float("nan")


def state_fields(components: Path, machines_prefix: str) -> str:
    """Where one machine's actor state bytes go (embedded profile): its largest fields."""
    like = f"{STATE_PREFIX}{machines_prefix}%"
    with sqlite3.connect(f"file:{components / 'state.db'}?mode=ro", uri=True) as db:
        row = db.execute("SELECT value FROM state WHERE key LIKE ? LIMIT 1", (like,)).fetchone()
    if row is None:
        return "no state"
    value = row[0].decode() if isinstance(row[0], bytes) else row[0]
    try:
        data = json.loads(json.loads(value))  # the actor stores its state as one JSON string
    except (ValueError, TypeError) as exc:
        return f"not readable here ({exc})"
    sizes = sorted(((len(json.dumps(v)), k) for k, v in data.items()), reverse=True)
    return ", ".join(f"{k} {n:,}" for n, k in sizes[:6])


def state_bytes(profile: str, components: Path, machines_prefix: str) -> tuple[int, int]:
    """(machines with state, total bytes of their actor state values) in the store itself."""
    like = f"{STATE_PREFIX}{machines_prefix}"
    if profile == "embedded":
        with sqlite3.connect(f"file:{components / 'state.db'}?mode=ro", uri=True) as db:
            rows = db.execute(
                "SELECT key, length(value) FROM state WHERE key LIKE ?", (like + "%",)
            ).fetchall()
    else:
        import redis

        host, port = REDIS_HOST.split(":")
        client = redis.Redis(host=host, port=int(port), db=BENCH_REDIS_DB)
        rows = [(k.decode(), client.hstrlen(k, "data")) for k in client.scan_iter(like + "*", count=1000)]
    ids = {key[len(STATE_PREFIX) :].split("||", 1)[0] for key, _ in rows}
    return len(ids), sum(int(n) for _, n in rows)


# -------------------------------------------------------------------------------------------- phases
def run_profile(profile: str, args: argparse.Namespace, tmp: Path) -> ProfileRun:
    run = ProfileRun(profile)
    redis = None
    if profile == "redis":
        import redis as redis_client

        host, port = REDIS_HOST.split(":")
        redis_client.Redis(host=host, port=int(port), db=BENCH_REDIS_DB).flushdb()
        redis = REDIS_HOST
    components = write_components(tmp / profile / "components", profile, redis, BENCH_REDIS_DB)
    print(f"... {profile}: starting the platform and training a first model", flush=True)
    platform = start_platform(components, tmp / profile, {"VIGIL_TRAINING_N_ESTIMATORS": "60"})
    quick = args.quick
    try:
        wait_model_ready(platform)
        # The sidecars are threads of this process here: its collector is set as `localdapr up` sets
        # the sidecars' process once they are ready.
        tune_garbage_collector()
        if args.only != "batched":
            run_single(run, platform, profile, components, args)
        run_batched(run, platform, profile, args)
    except BaseException:
        print(platform.logs()[-6000:])
        raise
    finally:
        platform.stop()
    if args.only == "batched":
        return run

    ops = 500 if quick else 2000
    print("... actor calls vs plain HTTP", flush=True)
    backend = "sqlite" if profile == "embedded" else "redis"
    rows = {r.name: r for r in run_backend("in-memory", ops, 8, tmp / f"actors-{profile}")}
    rows.update({f"{r.name} {backend}": r for r in run_backend(backend, ops, 8, tmp / f"actors-{profile}")})
    plain = rows["plain HTTP to the app"].p50
    run.values["actor_ratio"] = rows["actor call, 1,000 ids"].p50 / plain
    run.values["save_ratio"] = rows[f"actor call + state save, 1,000 ids {backend}"].p50 / plain
    return run


def run_single(
    run: ProfileRun, platform: Platform, profile: str, components: Path, args: argparse.Namespace
) -> None:
    """1,000 x 1 closed loop (rate, CPU per hop, RSS, state bytes), then 1,000 readings/s offered."""
    quick = args.quick
    base = {"url": platform.url("ingestion")}
    fleet = {**base, "machines": 1000, "prefix": "m1k-", "seed": 1000}
    print("... 1,000 machines: warm-up", flush=True)
    drive(
        {
            **fleet,
            "phase": "warm",
            "group": WARM_GROUP,
            "cycles": WARMUP,
            "first_seq": 1,
            "concurrency": 2,
        }
    )
    seq = WARMUP + 1
    readings = 3000 if quick else 10_000
    print(f"... 1,000 x 1, closed loop, {readings} readings", flush=True)
    checks_before, started = reminder_calls(platform), time.perf_counter()
    closed, run.hops = measured(
        platform,
        {**fleet, "phase": "closed", "group": 1, "per": 1, "readings": readings, "first_seq": seq},
        64,
        start_py_spy(platform, profile, 8) if args.py_spy else [],
    )
    seq += readings // 1000 + 1
    run.values["rate_1x1"] = closed["accepted"] / closed["seconds"]
    run.values["cpu_10k"] = sum(run.hops.values()) * 10
    if closed["rejected"]:
        run.notes.append(f"1,000 x 1: {closed['rejected']} reading(s) not accepted")
    equipment = platform.apps["equipment"].process.proc
    assert equipment is not None
    run.values["rss_1k"] = rss_mib(equipment.pid)
    with_state, total_bytes = state_bytes(profile, components, "m1k-")
    run.values["state_1k"] = total_bytes / max(with_state, 1)
    if profile == "embedded":
        run.notes.append(
            f"one machine's state after 1,000 x 1, bytes by field: {state_fields(components, 'm1k-')}"
        )

    seconds = 5 if quick else 10
    print(f"... 1,000 readings/s offered for {seconds} s", flush=True)
    opened = drive(
        {
            **fleet,
            "phase": "open",
            "rate": 1000,
            "seconds": seconds,
            "first_seq": seq,
            "max_in_flight": 5000,
            "connections": 512,
        }
    )
    run.values["checks_1x1"] = (reminder_calls(platform) - checks_before) / (time.perf_counter() - started)
    run.open_latencies = opened["latencies_ms"]
    run.values["p99_open"] = pct(opened["latencies_ms"], 0.99)
    run.values["rate_open"] = opened["accepted"] / opened["seconds"]
    if opened["rejected"] or opened["dropped"]:
        run.notes.append(f"open loop: {opened['rejected']} not accepted, {opened['dropped']} not sent")


def run_batched(run: ProfileRun, platform: Platform, profile: str, args: argparse.Namespace) -> None:
    """100 machines x 50 readings per request, one request at a time (rate, CPU per hop)."""
    base = {"url": platform.url("ingestion")}
    batch = {**base, "machines": 100, "prefix": "b100-", "seed": 100}
    print("... 100 machines x 50 readings per request", flush=True)
    drive({**batch, "phase": "warm", "group": WARM_GROUP, "cycles": WARMUP, "first_seq": 1})
    total = 15_000 if args.quick else 50_000
    batched, run.batch_hops = measured(
        platform,
        {**batch, "phase": "closed", "group": 100, "per": 50, "readings": total, "first_seq": WARMUP + 1},
        1,
        # py-spy samples this run only when it is the only one (else 1,000 x 1); ~13 s at 1,200/s
        start_py_spy(platform, profile, 10) if args.py_spy and args.only == "batched" else [],
    )
    run.values["rate_batch"] = batched["accepted"] / batched["seconds"]
    if batched["rejected"]:
        run.notes.append(f"100 x 50: {batched['rejected']} reading(s) not accepted")


def active_actors(platform: Platform) -> int:
    """Actors active in the equipment sidecar (a thread of this process), read on its own loop."""
    sidecar = platform.apps["equipment"].sidecar

    async def count() -> int:
        assert sidecar.sidecar is not None
        return sum(sidecar.sidecar.actors.active_counts().values())

    return int(sidecar.call(count()))


def run_scale(run: ProfileRun, args: argparse.Namespace, tmp: Path) -> None:
    """`--scale-machines` machines, each past its window, on a platform of their own: the equipment
    app's RSS and the actor state per machine with all of them active; then idle deactivation (the
    actor idle timeout `--idle-timeout`) and the next reading of a deactivated machine.

    The silence check runs once a day here: at its default 30 s period it keeps every watched
    machine's actor active (a reminder fire is a call, as in daprd), so no actor would ever be idle
    for a timeout above 30 s."""
    profile, n = run.profile, args.scale_machines
    redis = None
    if profile == "redis":
        import redis as redis_client

        host, port = REDIS_HOST.split(":")
        redis_client.Redis(host=host, port=int(port), db=BENCH_REDIS_DB).flushdb()
        redis = REDIS_HOST
    components = write_components(tmp / f"{profile}-scale" / "components", profile, redis, BENCH_REDIS_DB)
    env = {
        "VIGIL_TRAINING_N_ESTIMATORS": "60",
        "VIGIL_EQUIPMENT_ACTOR_IDLE_TIMEOUT_SECONDS": str(args.idle_timeout),
        "VIGIL_EQUIPMENT_SILENCE_CHECK_SECONDS": "86400",
    }
    print(f"... {profile}: {n:,} machines: starting a platform of their own", flush=True)
    platform = start_platform(components, tmp / f"{profile}-scale", env)
    try:
        wait_model_ready(platform)
        equipment = platform.apps["equipment"].process.proc
        assert equipment is not None
        rss_base = rss_mib(equipment.pid)
        limit = args.scale_seconds
        print(f"... {n:,} machines: each past its window (at most {limit} s)", flush=True)
        fleet = {"url": platform.url("ingestion"), "machines": n, "prefix": "s-", "seed": n}
        warmed = drive(
            {
                **fleet,
                "phase": "warm",
                "group": WARM_GROUP,
                "cycles": WARMUP + 1,
                "first_seq": 1,
                "concurrency": 4,
                "max_seconds": limit,
            }
        )
        # The warm-up outlasts the idle timeout, so its first machines are deactivated by its end: one
        # more reading each (500 machines a request) activates the whole fleet again, together.
        print(f"... {n:,} machines: one more reading each, all active together", flush=True)
        touched = drive(
            {
                **fleet,
                "phase": "closed",
                "group": 500,
                "per": 1,
                "readings": n,
                "first_seq": WARMUP + 2,
                "concurrency": 4,
            }
        )
        fleet_done = time.monotonic()
        run.values["active_peak"] = peak = active_actors(platform)
        run.values["rss"] = rss = rss_mib(equipment.pid)
        with_state, total_bytes = state_bytes(profile, components, "s-")
        run.values["rss_per_machine"] = (rss - rss_base) * 1024 / max(with_state, 1)
        run.values["rss_per_active"] = (rss - rss_base) * 1024 / max(peak, 1)
        run.values["state_bytes"] = total_bytes / max(with_state, 1)
        rate = warmed["accepted"] / warmed["seconds"]
        run.notes.append(
            f"{n:,} machines: {warmed['accepted']:,} of {n * (WARMUP + 1):,} warm-up readings applied in "
            f"{warmed['seconds']:.0f} s ({rate:,.0f}/s); then one reading each, {touched['accepted']:,} "
            f"applied in {touched['seconds']:.0f} s ({touched['accepted'] / touched['seconds']:,.0f}/s, "
            f"most actors activated again); {with_state:,} machines with actor state, {peak:,} actors "
            f"active; equipment RSS {rss_base:,.0f} MiB before the fleet"
        )

        print(f"... idle deactivation (idle timeout {args.idle_timeout:g} s, scan 30 s)", flush=True)
        deadline = fleet_done + args.idle_timeout + 30 + 180
        seen: list[tuple[float, int]] = []
        while time.monotonic() < deadline:
            count = active_actors(platform)
            seen.append((time.monotonic() - fleet_done, count))
            if count <= 0.05 * peak:
                break
            time.sleep(1.0)
        run.values["idle_seconds"] = seen[-1][0]
        run.values["active_idle"] = seen[-1][1]
        run.values["rss_idle"] = rss_mib(equipment.pid)
        first_drop = next((t for t, c in seen if c < peak), float("nan"))
        run.notes.append(
            f"idle: first deactivations seen {first_drop:.0f} s after the fleet's last reading, "
            f"{seen[-1][1]:,} of {peak:,} still active {seen[-1][0]:.0f} s after it"
        )

        sample = min(200, n)
        print(f"... the next reading of {sample} deactivated machines, one at a time", flush=True)
        one = {**fleet, "machines": sample, "phase": "closed", "group": 1, "per": 1, "concurrency": 1}
        back = drive({**one, "readings": sample, "first_seq": WARMUP + 3})
        run.values["react_p50"] = pct(back["latencies_ms"], 0.5)
        run.values["react_p99"] = pct(back["latencies_ms"], 0.99)
        warm = drive({**one, "readings": sample, "first_seq": WARMUP + 4})
        run.values["active_p50"] = pct(warm["latencies_ms"], 0.5)
        if back["rejected"] or warm["rejected"]:
            run.notes.append(f"reactivation: {back['rejected'] + warm['rejected']} reading(s) not accepted")
    except BaseException:
        print(platform.logs()[-6000:])
        raise
    finally:
        platform.stop()


# ------------------------------------------------------------------------------------------ output
def fmt(key: str, value: float | None, scale: int = 0) -> str:
    if value is None:
        return "not run" if key in SCALE_ROWS and not scale else "-"
    if key.endswith("ratio"):
        return f"{value:.2f}x"
    if key in ("cpu_10k", "checks_1x1"):
        return f"{value:.1f}"
    return f"{value:,.0f}"


def print_table(runs: list[ProfileRun], scale: int) -> None:
    head = " | ".join(r.profile for r in runs)
    print(f"| scenario | today (issue 13) | target | {head} |")
    print("|---|---:|---:|" + "---:|" * len(runs))
    for key, name, today, target in ROWS:
        cells = " | ".join(fmt(key, r.values.get(key), scale) for r in runs)
        # A skipped scale run names the fleet, not "0 machines active".
        print(f"| {name.format(scale=scale or 10_000)} | {today} | {target} | {cells} |")
    for r in runs:
        for note in r.notes:
            print(f"\n({r.profile}: {note})")
    for title, hops in (("1,000 x 1", [r.hops for r in runs]), ("100 x 50", [r.batch_hops for r in runs])):
        if not any(hops):
            continue  # that scenario was not run (--scale-only, --only batched)
        print(f"\n| CPU ms per reading, {title} (per hop) | {head} |")
        print("|---|" + "---:|" * len(runs))
        for hop in sorted(hops[0], key=lambda h: -hops[0][h]):
            print(f"| {hop} | " + " | ".join(f"{h.get(hop, float('nan')):.2f}" for h in hops) + " |")
        print("| total | " + " | ".join(f"{sum(h.values()):.2f}" for h in hops) + " |")


def save_plot(runs: list[ProfileRun], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib not installed: no plot; `pip install -e '.[dev]'`)")
        return None
    fig, (ax_rate, ax_lat, ax_hop) = plt.subplots(1, 3, figsize=(16, 4.8))
    names = ["1,000 x 1", "100 x 50"]
    width = 0.8 / len(runs)
    for i, r in enumerate(runs):
        xs = [j + i * width for j in range(len(names))]
        ax_rate.bar(xs, [r.values.get("rate_1x1", 0), r.values.get("rate_batch", 0)], width, label=r.profile)
        lat = sorted(r.open_latencies)
        if lat:
            ax_lat.plot(lat, [k / len(lat) for k in range(len(lat))], label=r.profile)
    ax_rate.axhline(2000, color="grey", linestyle=":", label="target 1,000 x 1")
    ax_rate.axhline(20000, color="black", linestyle=":", label="target 100 x 50")
    ax_rate.set_xticks([j + width * (len(runs) - 1) / 2 for j in range(len(names))], names)
    ax_rate.set_yscale("log")
    ax_rate.set_ylabel("readings / s")
    ax_rate.set_title("sustained throughput")
    ax_lat.axvline(500, color="grey", linestyle=":", label="target p99")
    ax_lat.set_xscale("log")
    ax_lat.set_xlabel("ms, planned send -> answer with health")
    ax_lat.set_title("latency CDF at 1,000 readings/s offered")
    hops = sorted(runs[0].hops, key=lambda h: runs[0].hops[h])
    for i, r in enumerate(runs):
        ax_hop.barh(
            [k + i * width for k in range(len(hops))],
            [r.hops.get(h, 0) for h in hops],
            width,
            label=r.profile,
        )
    ax_hop.set_yticks(range(len(hops)), [h.replace(" (stores' executors)", "") for h in hops], fontsize=7)
    ax_hop.set_xlabel("CPU ms per reading")
    ax_hop.set_title("where the CPU goes, 1,000 x 1")
    for ax in (ax_rate, ax_lat, ax_hop):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Vigil equipment pipeline through localdapr")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer readings per scenario (a rough look)")
    parser.add_argument("--profiles", nargs="+", default=["embedded", "redis"], choices=["embedded", "redis"])
    parser.add_argument(
        "--scale-machines",
        type=int,
        default=None,
        help="machines for the memory rows (10,000; --quick 2,000; 0 skips)",
    )
    parser.add_argument(
        "--scale-only",
        action="store_true",
        help="only the --scale-machines scenario (its warm-up alone takes most of a run)",
    )
    parser.add_argument(
        "--scale-seconds",
        type=float,
        default=None,
        help="at most this long for the scale warm-up (1,800 s; --quick 300 s)",
    )
    parser.add_argument(
        "--idle-timeout",
        type=float,
        default=600.0,
        help="the equipment actors' idle timeout in the scale scenario, seconds (600: the last "
        "pass, one reading per machine, must end within it for all machines to be active at once)",
    )
    parser.add_argument(
        "--only",
        choices=["batched"],
        default=None,
        help="only this scenario (batched: 100 x 50, its rate and CPU per hop; no 1,000 x 1, actor "
        "calls or scale run)",
    )
    parser.add_argument(
        "--py-spy",
        action="store_true",
        help="profile every process during 1,000 x 1, or during 100 x 50 with --only batched "
        "(bench/results/py-spy-*.txt)",
    )
    args = parser.parse_args()
    if args.scale_machines is None:
        args.scale_machines = 2000 if args.quick else 10_000
    if args.scale_seconds is None:
        args.scale_seconds = 300.0 if args.quick else 1800.0
    if args.only:
        args.scale_machines = 0
    if args.scale_only and not args.scale_machines:
        parser.error("--scale-only needs --scale-machines above 0")
    profiles = [p for p in args.profiles if p != "redis" or redis_up()]
    started = time.perf_counter()
    runs: list[ProfileRun] = []
    with tempfile.TemporaryDirectory(prefix="vigil-bench-") as tmp:
        for profile in profiles:
            run = ProfileRun(profile) if args.scale_only else run_profile(profile, args, Path(tmp))
            if args.scale_machines:
                run_scale(run, args, Path(tmp))
            runs.append(run)
    print(
        f"\npipeline benchmark ({time.perf_counter() - started:.0f} s, {os.cpu_count()} CPU(s), "
        f"{threading.active_count()} threads here){' --quick' if args.quick else ''}\n"
    )
    print_table(runs, args.scale_machines)
    if "redis" in args.profiles and "redis" not in profiles:
        print(f"\n(Redis unreachable at {REDIS_HOST}: Redis profile skipped)")
    plot = None if args.scale_only else save_plot(runs, RESULTS / "pipeline.png")
    if plot is not None:
        print(f"\nplot: {plot.relative_to(REPO)}")
    print(f"median open-loop latency: {[round(statistics.median(r.open_latencies or [0]), 1) for r in runs]}")


if __name__ == "__main__":
    main()
