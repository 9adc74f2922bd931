"""Faults injected into a running platform while FD001 units are replayed, and the comparison of the
outcome with an uninterrupted run ("never miss a failure").

Method: replay the same units twice on one platform, once uninterrupted (the baseline) and once with a
fault landing mid-run, each under its own equipment-id prefix; once both have settled, compare per
machine (prefix stripped) what the actor holds (readings applied, last seq, every prediction in
order) and what alerting serves (the alerts with their severity, state, RUL and top sensors; the
fleet view). Shared by tests/e2e/test_failures.py and bench/bench_failures.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import yaml
from dapr.actor import ActorId, ActorProxy

from apps.common import cmapss
from apps.common.actor_interface import EquipmentActorInterface
from apps.common.names import EQUIPMENT_ACTOR_TYPE, INFERENCE_APP_ID, STATE_STORE
from localdapr.durations import parse_go_duration
from localdapr.testing import SidecarThread, wait_until
from tests.e2e.platform import REPO, Platform
from vigil.fleet import Fleet, replay_fleet
from vigil.stream import BatchResult, IngestClient, PlannedRequest, Progress, stream

# FD001 training units run to failure (135-150 cycles): every one ends with a critical alert.
UNITS: Final = (91, 57, 70, 24)
# Platform settings for fault runs: the actors' reminder (silence check, and the re-announce of
# their alerts and health) every 2 s, and a health snapshot at most every second. 120 boosting rounds:
# at 40 the LightGBM model (learning rate 0.03) never predicts below about 30 cycles, so no engine would
# reach the critical threshold (20) and every scenario would end at warning.
FAULT_ENV: Final = {
    "VIGIL_TRAINING_N_ESTIMATORS": "120",
    "VIGIL_EQUIPMENT_SILENCE_CHECK_SECONDS": "2",
    "VIGIL_EQUIPMENT_HEALTH_PUBLISH_SECONDS": "1",
}


def inference_breaker_timeout(path: str = "dapr-config/resiliency.yaml") -> float:
    """Seconds the circuit breaker in front of inference stays open (the Resiliency spec)."""
    spec = yaml.safe_load((REPO / path).read_text())["spec"]
    breaker = spec["targets"]["apps"][INFERENCE_APP_ID]["circuitBreaker"]
    return parse_go_duration(spec["policies"]["circuitBreakers"][breaker]["timeout"])


# ---------------------------------------------------------------------------------------- replay
@dataclass(frozen=True, slots=True)
class Answer:
    """Ingestion's answer to one request of the replay (after the client's retries)."""

    sent_at: float  # time.time()
    received_at: float
    health: dict[str, dict[str, Any]]


class Replay:
    """Streams FD001 units into ingestion in a background thread, paced, through the same client as
    `vigil replay` (which resends whatever ingestion could not apply yet)."""

    def __init__(
        self, platform: Platform, prefix: str, units: tuple[int, ...] = UNITS, speed: float = 25.0
    ) -> None:
        self.platform = platform
        self.prefix = prefix
        self.speed = speed
        self.fleet: Fleet = replay_fleet(cmapss.load_train(), units, prefix)
        self.answers: list[Answer] = []
        self.progress: Progress | None = None
        self.error: BaseException | None = None
        self.cycles_done = 0
        self.retried = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"replay-{prefix}")

    @property
    def expected(self) -> dict[str, int]:
        """Machine (prefix stripped) -> its number of cycles, which is also its last seq."""
        return {m.equipment_id.removeprefix(self.prefix): m.cycles for m in self.fleet.machines}

    def start(self) -> Replay:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            # Backoff capped at 1 s (not 5 s) so a run resumes soon after the app is back; 30 failed
            # attempts in a row (over half a minute) before giving up.
            with IngestClient(
                self.platform.url("ingestion"), timeout=60, retries=30, max_backoff=1.0
            ) as client:
                self.progress = stream(
                    self.fleet,
                    client,
                    batch_size=len(self.fleet.machines),
                    speed=self.speed,
                    stop=self._stop,
                    on_result=self._on_result,
                )
                self.retried = client.retried
        except BaseException as exc:  # re-raised by join() in the caller's thread
            self.error = exc

    def _on_result(self, planned: PlannedRequest, result: BatchResult) -> None:
        self.answers.append(Answer(result.sent_at, result.received_at, result.health))
        self.cycles_done = planned.cycles_done

    @property
    def finished(self) -> bool:
        return self._thread.ident is not None and not self._thread.is_alive()

    def join(self, timeout: float = 120) -> Progress:
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(10)
            raise TimeoutError(f"replay {self.prefix} not done after {timeout:.0f} s")
        if self.error is not None:
            raise self.error
        assert self.progress is not None
        return self.progress

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


# ---------------------------------------------------------------------------------------- state
@dataclass(frozen=True, slots=True)
class MachineView:
    """One machine as its actor holds it."""

    readings_applied: int
    last_seq: int
    status: str
    predicted_rul: float | None
    open_alert_severity: str | None
    predictions_owed: int
    predictions_skipped: int
    history: tuple[tuple[int, float], ...]  # (seq, predicted RUL), oldest first


@dataclass(frozen=True, slots=True)
class AlertView:
    """One alert as alerting serves it (times left out: they differ between runs by nature)."""

    id: str  # prefix stripped
    severity: str
    state: str
    predicted_rul: float | None
    top_sensors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FleetView:
    """One machine's last HealthSnapshot as alerting serves it in /v1/fleet."""

    status: str
    readings_applied: int
    last_seq: int
    predicted_rul: float | None
    prediction_stale: bool
    predictions_owed: int
    open_alert_severity: str | None


@dataclass(frozen=True)
class Outcome:
    machines: dict[str, MachineView]
    alerts: dict[str, list[AlertView]]  # per machine, as listed (a repeated id would show twice)
    fleet: dict[str, FleetView]

    def unsettled(self) -> list[str]:
        """Why the platform has not settled yet: predictions still owed, or alerting not (yet) showing
        what the actors hold. Empty once it has."""
        why: list[str] = []
        for name, m in self.machines.items():
            if m.predictions_owed:
                why.append(f"{name}: {m.predictions_owed} predictions owed")
            seen = self.fleet.get(name)
            if seen is None or (seen.readings_applied, seen.status, seen.predictions_owed) != (
                m.readings_applied,
                m.status,
                m.predictions_owed,
            ):
                why.append(f"{name}: fleet shows {seen}, actor {m.status}/{m.readings_applied}")
            open_rul = [
                a.severity
                for a in self.alerts.get(name, [])
                if a.state in ("open", "acknowledged") and ":rul_low:" in a.id
            ]
            expected = [m.open_alert_severity] if m.open_alert_severity else []
            if open_rul != expected:
                why.append(f"{name}: open rul_low alerts {open_rul}, actor has {expected}")
        return why


def _actor(equipment_id: str) -> Any:
    return ActorProxy.create(EQUIPMENT_ACTOR_TYPE, ActorId(equipment_id), EquipmentActorInterface)


async def _machine(equipment_id: str) -> MachineView | None:
    proxy = _actor(equipment_id)
    try:
        health = json.loads(await proxy.GetHealth())
    except Exception:  # no readings yet (the actor says so), or the equipment app is down
        return None
    points = json.loads(await proxy.GetHistory(100_000))
    return MachineView(
        readings_applied=health["readings_applied"],
        last_seq=health["last_seq"],
        status=health["status"],
        predicted_rul=health["predicted_rul"],
        open_alert_severity=health["open_alert_severity"],
        predictions_owed=health["predictions_owed"],
        predictions_skipped=health["predictions_skipped"],
        history=tuple((int(p["seq"]), float(p["predicted_rul"])) for p in points),
    )


def observe(platform: Platform, prefix: str, names: list[str]) -> Outcome:
    """The state of machines `prefix + name` in the actors (through the equipment sidecar, with the
    SDK's ActorProxy) and in alerting."""

    async def machines() -> list[MachineView | None]:
        return [await _machine(prefix + n) for n in names]

    # The SDK reads DAPR_HTTP_PORT from the environment on every call.
    os.environ["DAPR_HTTP_PORT"] = str(platform.apps["equipment"].sidecar.http_port)
    views = asyncio.run(machines())
    alerting = platform.url("alerting")
    alerts: dict[str, list[AlertView]] = {}
    for name in names:
        resp = httpx.get(f"{alerting}/v1/alerts", params={"equipment_id": prefix + name}, timeout=30)
        resp.raise_for_status()
        alerts[name] = sorted(
            (
                AlertView(
                    a["id"].removeprefix(prefix),
                    a["severity"],
                    a["state"],
                    a["predicted_rul"],
                    tuple(t["sensor"] for t in a["top_sensors"]),
                )
                for a in resp.json()
            ),
            key=lambda a: a.id,
        )
    resp = httpx.get(f"{alerting}/v1/fleet", timeout=30)
    resp.raise_for_status()
    fleet = {
        s["equipment_id"].removeprefix(prefix): FleetView(
            s["status"],
            s["readings_applied"],
            s["last_seq"],
            s["predicted_rul"],
            s["prediction_stale"],
            s["predictions_owed"],
            s["open_alert_severity"],
        )
        for s in resp.json()["machines"]
        if s["equipment_id"].startswith(prefix) and s["equipment_id"].removeprefix(prefix) in names
    }
    return Outcome({n: v for n, v in zip(names, views, strict=True) if v is not None}, alerts, fleet)


def settled(platform: Platform, replay: Replay, timeout: float = 60) -> Outcome:
    """The outcome once every machine has caught up and alerting shows what the actors hold."""
    names = sorted(replay.expected)
    last: list[Outcome] = []

    def done() -> Outcome | None:
        try:
            outcome = observe(platform, replay.prefix, names)
        except httpx.HTTPError:
            return None  # alerting restarting
        last[:] = [outcome]
        missing = [n for n in names if n not in outcome.machines]
        return None if missing or outcome.unsettled() else outcome

    try:
        return wait_until(done, timeout=timeout, interval=0.5, what=f"{replay.prefix} settled")
    except TimeoutError as exc:
        why = last[0].unsettled() if last else ["nothing observed"]
        raise TimeoutError(f"{exc}: {why[:8]}") from None


# ---------------------------------------------------------------------------------------- compare
@dataclass
class Comparison:
    """How a fault run differs from the baseline, machine by machine (prefix stripped)."""

    readings_lost: int = 0  # readings the baseline applied that the fault run did not
    predictions_differing: int = 0  # (seq, RUL) points in one history and not the other
    alerts_differing: int = 0  # alert ids missing, extra, or with another severity/state/RUL
    duplicate_alerts: int = 0  # an alert id listed twice, or an episode the baseline never had
    fleet_differing: int = 0  # machines whose /v1/fleet entry differs
    details: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return not (
            self.readings_lost
            or self.predictions_differing
            or self.alerts_differing
            or self.duplicate_alerts
            or self.fleet_differing
        )


def compare(baseline: Outcome, run: Outcome, expected: dict[str, int]) -> Comparison:
    c = Comparison()
    for name, cycles in sorted(expected.items()):
        base, got = baseline.machines.get(name), run.machines.get(name)
        if base is None or got is None:
            c.readings_lost += cycles if got is None else 0
            c.details.append(f"{name}: missing in the {'baseline' if base is None else 'fault run'}")
            continue
        lost = max(base.readings_applied - got.readings_applied, 0) + max(cycles - got.readings_applied, 0)
        if lost or got.last_seq != base.last_seq:
            c.readings_lost += lost
            c.details.append(
                f"{name}: applied {got.readings_applied} (baseline {base.readings_applied}, "
                f"cycles {cycles}), last seq {got.last_seq} (baseline {base.last_seq})"
            )
        differing = len(set(base.history) ^ set(got.history))
        if differing or base.history != got.history:
            c.predictions_differing += max(differing, 1)
            c.details.append(f"{name}: predictions differ: {_first_difference(base.history, got.history)}")
        if (got.status, got.predicted_rul, got.open_alert_severity, got.predictions_skipped) != (
            base.status,
            base.predicted_rul,
            base.open_alert_severity,
            base.predictions_skipped,
        ):
            c.details.append(f"{name}: actor health {got} != baseline {base}")
            c.predictions_differing += 0 if differing else 1
        base_alerts, got_alerts = baseline.alerts.get(name, []), run.alerts.get(name, [])
        repeated = sum(n - 1 for n in Counter(a.id for a in got_alerts).values())
        extra_episodes = {a.id for a in got_alerts} - {a.id for a in base_alerts}
        c.duplicate_alerts += repeated + len(extra_episodes)
        differing_alerts = set(base_alerts) ^ set(got_alerts)
        if differing_alerts or repeated:
            c.alerts_differing += len({a.id for a in differing_alerts})
            c.details.append(f"{name}: alerts {got_alerts} != baseline {base_alerts}")
        if baseline.fleet.get(name) != run.fleet.get(name):
            c.fleet_differing += 1
            c.details.append(f"{name}: fleet {run.fleet.get(name)} != baseline {baseline.fleet.get(name)}")
    return c


def _first_difference(a: tuple[tuple[int, float], ...], b: tuple[tuple[int, float], ...]) -> str:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return f"#{i}: baseline {x}, fault run {y}"
    return f"baseline has {len(a)} points, fault run {len(b)}"


# ---------------------------------------------------------------------------------------- faults
Trigger = Callable[["Replay"], bool]


def at_cycle(cycle: int) -> Trigger:
    """Once the replay has sent `cycle` cycles of every machine."""
    return lambda replay: replay.cycles_done >= cycle


def first_status(status: str) -> Trigger:
    """Once ingestion's answer says some machine of the replay reached `status` (e.g. its first
    warning: alert events are on their way)."""
    return lambda replay: any(
        h.get("status") == status for a in list(replay.answers) for h in a.health.values()
    )


@dataclass
class Fault:
    """A fault injected once `trigger` holds, mid-replay; `inject` returns when it is over (the app is
    back) while the replay keeps going in its thread."""

    name: str
    trigger: Trigger
    inject: Callable[[Platform, Replay], None]
    speed: float | None = None  # cycles/s of the replay it hits (None: the default)
    # False: what matters is what happened before it (it may land just after the replay's last cycle).
    mid_run: bool = True
    # Problems seen while the fault lasted (what must hold during it, not only after it).
    problems: list[str] = field(default_factory=list)
    at_cycle: int | None = None  # where it landed
    seconds: float = 0.0  # how long it lasted


def kill_restart(
    app_id: str, down_seconds: float = 2.5, trigger: Trigger | None = None, lose_state: bool = False
) -> Fault:
    """`kill -9` of one app, started again `down_seconds` later on the same port (as a supervisor
    would); the replay goes on meanwhile (its client resending what was not applied).

    `lose_state`: the app also comes back on an empty state store (every key it had in
    `statestore` deleted while it is down: a Redis without persistence, a new volume).
    """

    def inject(platform: Platform, replay: Replay) -> None:
        app = platform.apps[app_id]
        app.kill_app()
        started = time.monotonic()
        if lose_state:
            wipe_app_state(platform, app_id)
        time.sleep(max(down_seconds - (time.monotonic() - started), 0.0))  # the outage itself
        app.restart_app()

    name = f"kill -9 {app_id}" + (", state lost" if lose_state else "")
    return Fault(name, trigger or at_cycle(40), inject, mid_run=not lose_state)


def kill_localdapr(down_seconds: float = 2.5, trigger: Trigger | None = None) -> Fault:
    """What `kill -9` of `vigil up` does: every app dies with it (parent-death signal), every sidecar
    is gone, and with them whatever the in-memory broker held; then everything starts again on the
    same ports and stores, as a supervisor would. The in-process sidecars are stopped, which drops the
    last reference to the shared in-memory components (a new, empty broker on restart); state in
    SQLite or Redis stays. The replay's client resends what was not applied."""

    def inject(platform: Platform, replay: Replay) -> None:
        for app in platform.apps.values():
            app.kill_app()
        started = time.monotonic()
        for app in platform.apps.values():
            app.sidecar.stop()
        time.sleep(max(down_seconds - (time.monotonic() - started), 0.0))  # the outage itself
        for app in platform.apps.values():
            app.sidecar = SidecarThread(app.sidecar.options).start()
        for app in platform.apps.values():
            app.restart_app(timeout=60)
        for app in platform.apps.values():
            app.sidecar.wait_app_ready(60)

    return Fault("kill -9 localdapr (every sidecar and app), restarted", trigger or at_cycle(40), inject)


def wipe_app_state(platform: Platform, app_id: str, store: str = STATE_STORE) -> int:
    """Delete every key `app_id` has in `store` (physical keys `<appId>||...`), through the store its
    sidecar has loaded; returns how many there were."""
    sidecar = platform.apps[app_id].sidecar
    assert sidecar.sidecar is not None
    loaded = sidecar.sidecar.runtime.states[store]

    async def wipe() -> int:
        keys = await loaded.store.keys_with_prefix(f"{loaded.prefix}||")
        for key in keys:
            await loaded.store.delete(key)
        return len(keys)

    return int(sidecar.call(wipe()))


def pause_inference(trigger: Trigger | None = None, limit: float = 60, speed: float = 12.0) -> Fault:
    """SIGSTOP of inference, then SIGCONT: hung, not dead (its port still takes connections).

    The pause lasts until alerting shows every machine of the replay stale, then the circuit
    breaker's timeout (dapr-config/resiliency.yaml) and 1 s more: the breaker, opened by the failed
    calls, goes half-open and its trial call fails while inference is still hung. Meanwhile no
    machine may report `ok`: every answer to a request sent during the pause must say stale, with
    predictions owed. The replay is slower (`speed`) so it goes on after the pause, and the owed
    predictions are made both by new readings and by the actors' reminder.
    """
    hold = inference_breaker_timeout() + 1.0

    def inject(platform: Platform, replay: Replay) -> None:
        app = platform.apps[INFERENCE_APP_ID]
        names = sorted(replay.expected)
        app.pause_app()
        paused_at = time.time()
        try:
            try:
                wait_until(
                    lambda: _fleet_all_stale(platform, replay.prefix, names),
                    timeout=limit,
                    interval=0.25,
                    what="alerting showing every machine stale while inference is hung",
                )
            except TimeoutError as exc:
                fault.problems.append(str(exc))
            time.sleep(hold)  # the outage itself, past the breaker's timeout
        finally:
            app.resume_app()
        resumed_at = time.time()
        during = [a for a in replay.answers if a.sent_at >= paused_at and a.received_at <= resumed_at]
        if not during:
            fault.problems.append("no answer from ingestion during the pause: nothing was checked")
        for answer in during:
            for eid, h in answer.health.items():
                if h["status"] == "ok" or not h["prediction_stale"] or not h["predictions_owed"]:
                    fault.problems.append(
                        f"{eid} reported {h['status']}, stale={h['prediction_stale']}, "
                        f"owed={h['predictions_owed']} while inference was hung"
                    )

    fault = Fault("SIGSTOP inference", trigger or at_cycle(35), inject, speed=speed)
    return fault


def _fleet_all_stale(platform: Platform, prefix: str, names: list[str]) -> bool:
    try:
        machines = httpx.get(f"{platform.url('alerting')}/v1/fleet", timeout=10).json()["machines"]
    except (httpx.HTTPError, ValueError, KeyError):
        return False
    seen = {
        s["equipment_id"].removeprefix(prefix): s for s in machines if s["equipment_id"].startswith(prefix)
    }
    return all(n in seen and seen[n]["prediction_stale"] and seen[n]["status"] != "ok" for n in names)


@dataclass
class FaultRun:
    fault: Fault | None
    replay: Replay
    progress: Progress
    outcome: Outcome
    seconds: float


def run(
    platform: Platform,
    prefix: str,
    fault: Fault | None = None,
    units: tuple[int, ...] = UNITS,
    speed: float = 25.0,
) -> FaultRun:
    """Replay the units under `prefix` with `fault` landing mid-run (None: the baseline), then wait
    until everything has settled."""
    started = time.monotonic()
    replay = Replay(platform, prefix, units, speed if fault is None or fault.speed is None else fault.speed)
    replay.start()
    try:
        if fault is not None:
            wait_until(
                lambda: fault.trigger(replay) or replay.finished,
                timeout=120,
                interval=0.02,
                what=f"the moment for {fault.name}",
            )
            fault.at_cycle = replay.cycles_done
            if not fault.trigger(replay):
                fault.problems.append(f"the replay ended before the moment for {fault.name} came")
            elif replay.finished and fault.mid_run:
                fault.problems.append(f"the replay was over before {fault.name}: it did not land mid-run")
            else:
                begun = time.monotonic()
                fault.inject(platform, replay)
                fault.seconds = time.monotonic() - begun
        progress = replay.join()
    finally:
        replay.stop()
    outcome = settled(platform, replay)
    return FaultRun(fault, replay, progress, outcome, time.monotonic() - started)
