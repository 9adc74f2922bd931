"""Chaos: faults injected while FD001 units are replayed to failure, and what they cost. A longer
variant of tests/e2e/test_failures.py (same machinery: tests/e2e/chaos.py).

    python -m bench.bench_failures [--profiles embedded,redis] [--units 1-8] [--speed 20]
                                   [--repeat 1] [--scenarios equipment,inference,...]
    make chaos

Per profile the whole platform is started once (every app of dapr.yaml as its own process, a
localdapr sidecar each, in this process), the units are replayed once uninterrupted (the baseline),
then once per scenario and repetition under a fresh equipment-id prefix. Each run is compared with
the baseline machine by machine once it has settled: readings lost, predictions (seq, RUL) that
differ, alerts that differ (id, severity, state, RUL, top sensors) and duplicate alerts (an id listed
twice, or an episode the baseline does not have). Outcome `identical` is the requirement; anything
else names what differed. The Redis profile (Redis DB 11, flushed first) is skipped when Redis is down.

Scenarios: `equipment`, `ingestion`, `alerting`, `inference-kill`: `kill -9` of that app, restarted
2.5 s later on the same port (alerting when the first warning is on its way, the others at cycle
40); `inference`: SIGSTOP of inference until every machine shows stale, plus the circuit breaker's
timeout, then SIGCONT (no machine may report ok meanwhile); `alerting-lost`: `kill -9` of alerting
once a machine is critical, and it comes back on an empty store (only the actors' re-announce can
restore the alerts raised before); `localdapr`: what `kill -9` of `vigil up` does (every app and
sidecar gone, the in-memory broker's messages with them), everything restarted on the same ports and
stores 2.5 s later. Profile `redis-aof` runs the Redis profile on a private
redis-server started by the bench (append-only file, fsync on every write, as a production Redis that
must not lose state would run); its scenario `redis-restart` kills that server with SIGKILL mid-run and
starts it again on the same port and files 2.5 s later.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from apps.common import cmapss
from bench.bench_sidecar import REDIS_HOST, redis_up
from localdapr.ports import free_port
from localdapr.testing import port_open, wait_until
from tests.e2e import chaos
from tests.e2e.platform import Platform, running_platform, write_components
from vigil.fleet import parse_units

BENCH_REDIS_DB = 11  # flushed at the start; nothing else uses it

SCENARIOS: dict[str, Callable[[], chaos.Fault]] = {
    "equipment": lambda: chaos.kill_restart("equipment"),
    "inference": lambda: chaos.pause_inference(),
    "alerting": lambda: chaos.kill_restart("alerting", trigger=chaos.first_status("warning")),
    "ingestion": lambda: chaos.kill_restart("ingestion"),
    "inference-kill": lambda: chaos.kill_restart("inference"),
    "localdapr": lambda: chaos.kill_localdapr(),
    # Last: it empties alerting's store, for the earlier runs too (the actors' re-announce restores it).
    "alerting-lost": lambda: chaos.kill_restart(
        "alerting", trigger=chaos.first_status("critical"), lose_state=True
    ),
}


class PrivateRedis:
    """A redis-server of the bench's own, persisting every write to its append-only file, so that a
    kill -9 and a restart lose nothing that was acknowledged (the machine's shared Redis keeps nothing
    on disk, and must not be restarted under the other users of this machine)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> PrivateRedis:
        self.folder.mkdir(parents=True, exist_ok=True)
        cmd = [
            "redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.folder),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: port_open(self.port), timeout=15, what=f"private redis on {self.port}")
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restart_fault(self, down_seconds: float = 2.5) -> chaos.Fault:
        def inject(platform: Platform, replay: chaos.Replay) -> None:
            self.kill()
            time.sleep(down_seconds)  # the outage itself
            self.start()

        return chaos.Fault("kill -9 redis-server (AOF), restarted", chaos.at_cycle(40), inject)


@dataclass
class Row:
    scenario: str
    profile: str
    readings_lost: int | str
    predictions_differing: int | str
    alerts_differing: int | str
    duplicate_alerts: int | str
    outcome: str
    seconds: float


def run_profile(
    profile: str, scenarios: list[str], units: tuple[int, ...], speed: float, repeat: int
) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix=f"chaos-{profile}-") as folder:
        tmp = Path(folder)
        redis = None
        private: PrivateRedis | None = None
        if profile == "redis-aof":
            private = PrivateRedis(tmp / "redis").start()
            redis = private.address
            scenarios = ["redis-restart"]
        elif profile == "redis":
            import redis as redis_client

            redis = REDIS_HOST
            host, port = REDIS_HOST.split(":")
            redis_client.Redis(host=host, port=int(port), db=BENCH_REDIS_DB).flushdb()
        try:
            components = write_components(
                tmp / "components", "redis" if private else profile, redis, BENCH_REDIS_DB
            )
            rows += _run_scenarios(profile, components, tmp, scenarios, units, speed, repeat, private)
        finally:
            if private is not None:
                private.kill()
    return rows


def _run_scenarios(
    profile: str,
    components: Path,
    tmp: Path,
    scenarios: list[str],
    units: tuple[int, ...],
    speed: float,
    repeat: int,
    private: PrivateRedis | None,
) -> list[Row]:
    rows: list[Row] = []
    started = time.monotonic()
    with running_platform(components, tmp, dict(chaos.FAULT_ENV)) as platform:
        print(f"[{profile}] platform up in {time.monotonic() - started:.0f} s", flush=True)
        base = chaos.run(platform, f"base-{uuid.uuid4().hex[:4]}-", units=units, speed=speed)
        critical = sum(m.open_alert_severity == "critical" for m in base.outcome.machines.values())
        print(f"[{profile}] baseline: {base.progress.summary()}", flush=True)
        print(
            f"[{profile}] baseline: {critical}/{len(units)} machines end with a critical alert",
            flush=True,
        )
        for name in scenarios:
            for i in range(repeat):
                fault = private.restart_fault() if name == "redis-restart" and private else SCENARIOS[name]()
                prefix = f"{name[:5]}{i}-{uuid.uuid4().hex[:4]}-"
                try:
                    result = chaos.run(platform, prefix, fault, units=units, speed=speed)
                except Exception as exc:  # a run that never settles is an outcome too
                    rows.append(Row(name, profile, "?", "?", "?", "?", f"FAILED: {exc}"[:200], 0.0))
                    print(f"[{profile}] {name} #{i + 1}: {rows[-1].outcome}", flush=True)
                    continue
                diff = chaos.compare(base.outcome, result.outcome, result.replay.expected)
                problems = fault.problems + (
                    [f"{result.progress.rejected} readings refused"] if result.progress.rejected else []
                )
                outcome = "identical" if diff.identical and not problems else "DIFFERENT"
                rows.append(
                    Row(
                        name,
                        profile,
                        diff.readings_lost,
                        diff.predictions_differing,
                        diff.alerts_differing,
                        diff.duplicate_alerts,
                        outcome,
                        result.seconds,
                    )
                )
                print(
                    f"[{profile}] {fault.name} #{i + 1}: {outcome}, landed at cycle {fault.at_cycle}, "
                    f"lasted {fault.seconds:.1f} s, {result.replay.retried} request(s) resent, "
                    f"run {result.seconds:.1f} s",
                    flush=True,
                )
                for line in (problems + diff.details)[:10]:
                    print(f"    {line}", flush=True)
    return rows


def table(rows: list[Row]) -> str:
    head = (
        "scenario",
        "profile",
        "readings lost",
        "predictions differing",
        "alerts differing",
        "duplicate alerts",
        "outcome",
        "run s",
    )
    cells = [
        (
            r.scenario,
            r.profile,
            str(r.readings_lost),
            str(r.predictions_differing),
            str(r.alerts_differing),
            str(r.duplicate_alerts),
            r.outcome,
            f"{r.seconds:.1f}",
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(head)]
    lines = [" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("-|-".join("-" * w for w in widths))
    lines += [" | ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)) for cell in cells]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profiles", default="embedded,redis,redis-aof")
    parser.add_argument("--units", default="1-8", help="FD001 training units (default 1-8, 150-287 cycles)")
    parser.add_argument("--speed", type=float, default=20.0, help="cycles per second (default 20)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per scenario and profile (default 1)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    args = parser.parse_args()
    # The sidecars (threads of this process) warn about every delivery and reminder that meets a dead
    # app: that is the fault working as intended, and it would bury the results.
    logging.getLogger("localdapr").setLevel(logging.ERROR)
    units = tuple(parse_units(args.units, cmapss.load_train()))
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in scenarios if s not in SCENARIOS and s != "redis-restart"]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    if "redis" in profiles and not redis_up():
        print(f"Redis not reachable at {REDIS_HOST}: the redis profile is skipped", flush=True)
        profiles.remove("redis")
    if "redis-aof" in profiles and shutil.which("redis-server") is None:
        print("redis-server is not installed: the redis-aof profile is skipped", flush=True)
        profiles.remove("redis-aof")
    rows: list[Row] = []
    for profile in profiles:
        rows += run_profile(profile, scenarios, units, args.speed, args.repeat)
    print()
    print(table(rows))
    return 0 if rows and all(r.outcome == "identical" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
