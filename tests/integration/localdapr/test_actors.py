"""Actors through localdapr, with the official SDK on both sides (ActorProxy callers, DaprActor host).

The host app (sidecar_apps/actor_app.py) runs as a real uvicorn process and records what only it can
see (overlapping turns, activations, reminder and timer fires) at `GET /stats`.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from dapr.actor import ActorId, ActorProxy
from dapr.clients.exceptions import DaprInternalError

from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarProcess, SidecarThread, free_port, launcher_token, wait_until
from tests.integration.localdapr.components import state_component, unique, write
from tests.integration.localdapr.sidecar_apps.actor_app import CounterActorInterface

pytestmark = pytest.mark.sidecar

APP = "tests.integration.localdapr.sidecar_apps.actor_app:app"
REPO = Path(__file__).resolve().parents[3]
TYPE = "CounterActor"
FAST = {"ACTOR_IDLE_TIMEOUT": "1", "ACTOR_SCAN_INTERVAL": "0.1"}


@dataclass
class Node:
    """One app instance with its sidecar."""

    sidecar: SidecarThread
    app: AppProcess

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.sidecar.http_port}/v1.0"

    @property
    def app_url(self) -> str:
        return f"http://127.0.0.1:{self.app.port}"

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.app_url}/stats", timeout=5).json()

    def stop(self) -> None:
        self.app.stop()
        self.sidecar.stop()


@dataclass
class Cluster:
    folder: Path
    nodes: list[Node] = field(default_factory=list)

    def start(self, app_id: str, env: dict[str, str] | None = None) -> Node:
        port = free_port()
        sidecar = SidecarThread(
            SidecarOptions(
                app_id=app_id,
                resources_paths=[self.folder / "res"],
                app_port=port,
                registry_dir=self.folder / "reg",
            )
        ).start()
        app = AppProcess(APP, port, sidecar.options.app_env(), extra_env=env, cwd=REPO, name=app_id).start()
        sidecar.wait_app_ready()
        node = Node(sidecar, app)
        self.nodes.append(node)
        return node

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def actor_store(folder: Path, profile: str = "in-memory", redis: str | None = None) -> None:
    write(
        folder, "state.yaml", state_component(profile, folder, redis=redis, extra={"actorStateStore": "true"})
    )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Node, Node]]:
    """A host of CounterActor (1 s idle timeout) and a second app that only calls actors."""
    folder = tmp_path_factory.mktemp("actors")
    actor_store(folder / "res")
    c = Cluster(folder)
    try:
        host = c.start(unique("host"), FAST)
        caller = c.start(unique("caller"), {"CALLER_ONLY": "1"})
        yield host, caller
    finally:
        c.stop()


def call(node: Node, actor_id: str, method: str, arg: Any = None, actor_type: str = TYPE) -> httpx.Response:
    return httpx.post(f"{node.api}/actors/{actor_type}/{actor_id}/method/{method}", json=arg, timeout=30)


def new_id() -> str:
    return uuid.uuid4().hex[:10]


def fires(node: Node, kind: str, actor_id: str) -> list[dict[str, Any]]:
    return node.stats()[kind].get(actor_id, [])


# ---------------------------------------------------------------------------------- invocation
def test_counter_from_two_apps_updates_one_state(cluster: tuple[Node, Node]) -> None:
    host, caller = cluster
    actor_id = new_id()
    # Each app calls with the SDK's ActorProxy through its own sidecar.
    assert httpx.post(f"{host.app_url}/call/{actor_id}/Add", json={"arg": 5}).json() == 5
    assert httpx.post(f"{caller.app_url}/call/{actor_id}/Add", json={"arg": 3}).json() == 8
    assert httpx.post(f"{caller.app_url}/call/{actor_id}/Get", json={}).json() == 8
    # The state sits under daprd's key layout in the one actor store.
    store = host.sidecar.sidecar.runtime.actor_store  # type: ignore[union-attr]
    key = f"{host.sidecar.options.app_id}||{TYPE}||{actor_id}||count"
    found = host.sidecar.call(store.store.get(key))
    assert found is not None and found.data == b"8"


def test_state_api_get_missing_is_204_and_transaction_round_trips(cluster: tuple[Node, Node]) -> None:
    host, caller = cluster
    actor_id = new_id()
    call(host, actor_id, "Add", 1)
    base = f"{host.api}/actors/{TYPE}/{actor_id}/state"
    assert httpx.get(f"{base}/nothing").status_code == 204
    ops = [
        {"operation": "upsert", "request": {"key": "k1", "value": {"a": 1}}},
        {"operation": "delete", "request": {"key": "k2"}},
    ]
    assert httpx.put(base, json=ops).status_code == 204
    got = httpx.get(f"{base}/k1")
    assert got.status_code == 200 and got.json() == {"a": 1}
    # Another app's sidecar does not host the actor: daprd's ERR_ACTOR_INSTANCE_MISSING.
    other = httpx.get(f"{caller.api}/actors/{TYPE}/{actor_id}/state/k1")
    assert other.status_code == 400 and other.json()["errorCode"] == "ERR_ACTOR_INSTANCE_MISSING"


def test_raising_method_reaches_caller_and_does_not_poison(
    cluster: tuple[Node, Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, caller = cluster
    monkeypatch.setenv("DAPR_HTTP_PORT", str(caller.sidecar.http_port))
    actor_id = new_id()

    async def scenario() -> int:
        proxy = ActorProxy.create(TYPE, ActorId(actor_id), CounterActorInterface)
        await proxy.Add(2)
        with pytest.raises(DaprInternalError) as raised:
            await proxy.Boom("pump 7 exploded")
        assert "pump 7 exploded" in str(raised.value)
        assert raised.value.as_dict()["errorCode"] == "ERR_ACTOR_INVOKE_METHOD"
        return int(await proxy.Add(1))

    assert asyncio.run(scenario()) == 3


def test_unknown_actor_type_fails_promptly(cluster: tuple[Node, Node]) -> None:
    _, caller = cluster
    # No placement wait: an answer within the call's deadline (30 s), not after daprd's placement timeout.
    resp = call(caller, "x", "Get", actor_type="NoSuchActor")
    assert resp.status_code == 500
    body = resp.json()
    assert body["errorCode"] == "ERR_ACTOR_INVOKE_METHOD"
    assert "did not find address for actor 'NoSuchActor/x'" in body["message"]


def test_metadata_counts_active_actors(cluster: tuple[Node, Node]) -> None:
    host, _ = cluster
    call(host, new_id(), "Get")
    meta = httpx.get(f"{host.api}/metadata").json()
    counts = {a["type"]: a["count"] for a in meta["actors"]}
    assert counts.get(TYPE, 0) >= 1


# ---------------------------------------------------------------------------------- concurrency
async def test_calls_to_one_id_never_overlap(cluster: tuple[Node, Node]) -> None:
    host, caller = cluster
    actor_id = new_id()
    async with httpx.AsyncClient(timeout=30) as client:
        url = f"{caller.api}/actors/{TYPE}/{actor_id}/method/Slow"
        results = await asyncio.gather(*(client.post(url, json=30) for _ in range(15)))
    assert all(r.status_code == 200 for r in results)
    assert sorted(int(r.text) for r in results) == list(range(1, 16))  # each turn saw the previous one
    assert host.stats()["overlaps"].get(actor_id, 0) == 0


async def test_calls_to_many_ids_run_concurrently(cluster: tuple[Node, Node]) -> None:
    host, caller = cluster
    ids = [new_id() for _ in range(15)]
    async with httpx.AsyncClient(timeout=30) as client:
        results = await asyncio.gather(
            *(client.post(f"{caller.api}/actors/{TYPE}/{i}/method/Slow", json=300) for i in ids)
        )
    assert all(r.status_code == 200 for r in results)
    # Counted by the host, not timed (a loaded machine would make a time limit flaky): calls to
    # different ids were inside the app at the same moment.
    assert host.stats()["max_global_in_flight"] > 1


# ---------------------------------------------------------------------------------- reminders, timers
def test_reminders_fire_on_schedule_and_stop_when_unregistered(cluster: tuple[Node, Node]) -> None:
    host, _ = cluster
    stopped, control = new_id(), new_id()
    assert (
        call(host, stopped, "StartReminder", {"name": "check", "period": 0.2, "state": "s1"}).status_code
        == 200
    )
    got = wait_until(lambda: len(fires(host, "reminders", stopped)) >= 3, 10, what="3 reminder fires")
    assert got
    ticks = fires(host, "reminders", stopped)
    assert ticks[0]["name"] == "check" and ticks[0]["state"] == "s1"
    gaps = [b["at"] - a["at"] for a, b in zip(ticks, ticks[1:], strict=False)]
    assert all(0.1 < g < 0.6 for g in gaps), gaps
    assert call(host, stopped, "StopReminder", "check").status_code == 200
    count = len(fires(host, "reminders", stopped))
    # A control reminder with the same period proves time passed: 3 of its periods, no fire of ours.
    call(host, control, "StartReminder", {"name": "check", "period": 0.2})
    wait_until(lambda: len(fires(host, "reminders", control)) >= 4, 10, what="control reminder fires")
    assert len(fires(host, "reminders", stopped)) == count
    call(host, control, "StopReminder", "check")


def test_timers_fire_and_stop(cluster: tuple[Node, Node]) -> None:
    host, _ = cluster
    stopped, control = new_id(), new_id()
    assert call(host, stopped, "StartTimer", {"name": "tick", "period": 0.2}).status_code == 200
    wait_until(lambda: len(fires(host, "timers", stopped)) >= 3, 10, what="3 timer fires")
    assert fires(host, "timers", stopped)[0]["data"] == {"name": "tick"}
    assert call(host, stopped, "StopTimer", "tick").status_code == 200
    count = len(fires(host, "timers", stopped))
    call(host, control, "StartTimer", {"name": "tick", "period": 0.2})
    wait_until(lambda: len(fires(host, "timers", control)) >= 4, 10, what="control timer fires")
    assert len(fires(host, "timers", stopped)) == count
    call(host, control, "StopTimer", "tick")


def test_one_shot_reminder_fires_once_and_is_forgotten(cluster: tuple[Node, Node]) -> None:
    host, control_node = cluster
    actor_id, control = new_id(), new_id()
    call(host, actor_id, "StartReminder", {"name": "once", "due": 0.1})
    wait_until(lambda: len(fires(host, "reminders", actor_id)) >= 1, 10, what="one-shot fire")
    call(host, control, "StartReminder", {"name": "tick", "period": 0.2})
    wait_until(lambda: len(fires(host, "reminders", control)) >= 3, 10, what="control fires")
    assert len(fires(host, "reminders", actor_id)) == 1
    assert fires(host, "reminders", actor_id)[0]["period"] == ""
    got = httpx.get(f"{host.api}/actors/{TYPE}/{actor_id}/reminders/once")
    assert got.status_code == 204
    call(host, control, "StopReminder", "tick")


def test_iso_period_with_repetitions_over_http(cluster: tuple[Node, Node]) -> None:
    host, _ = cluster
    actor_id, control = new_id(), new_id()
    call(host, actor_id, "Get")
    url = f"{host.api}/actors/{TYPE}/{actor_id}/reminders/r3"
    assert httpx.put(url, json={"dueTime": "0s", "period": "R3/PT0.2S", "data": "eA=="}).status_code == 204
    wait_until(lambda: len(fires(host, "reminders", actor_id)) >= 3, 10, what="3 repetitions")
    call(host, control, "StartReminder", {"name": "tick", "period": 0.2})
    wait_until(lambda: len(fires(host, "reminders", control)) >= 3, 10, what="control fires")
    assert len(fires(host, "reminders", actor_id)) == 3
    assert fires(host, "reminders", actor_id)[0]["state"] == "x"
    call(host, control, "StopReminder", "tick")


# ---------------------------------------------------------------------------------- deactivation
def test_idle_actor_is_deactivated_and_reactivates_with_state(cluster: tuple[Node, Node]) -> None:
    host, caller = cluster
    actor_id = new_id()
    assert call(caller, actor_id, "Add", 41).json() == 41
    wait_until(lambda: host.stats()["deactivations"].get(actor_id, 0) >= 1, 10, what="idle deactivation")
    assert call(caller, actor_id, "Add", 1).json() == 42
    assert host.stats()["activations"][actor_id] == 2


# ---------------------------------------------------------------------------------- two replicas
def test_two_replicas_spread_ids_and_survivor_takes_over(tmp_path: Path) -> None:
    actor_store(tmp_path / "res")
    c = Cluster(tmp_path)
    try:
        app_id = unique("replicated")
        first = c.start(app_id)
        second = c.start(app_id)
        caller = c.start(unique("caller"), {"CALLER_ONLY": "1"})
        ids = [f"m-{i}" for i in range(200)]
        # Both replicas must be in every sidecar's view of the ring before the calls.
        wait_until(
            lambda: len(caller.sidecar.sidecar.actors.placement.hosts(TYPE)) == 2,  # type: ignore[union-attr]
            10,
            what="both replicas placed",
        )

        async def add_all() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as client:
                return await asyncio.gather(
                    *(
                        client.post(f"{caller.api}/actors/{TYPE}/{a}/method/Add", json=i + 1)
                        for i, a in enumerate(ids)
                    )
                )

        assert all(r.status_code == 200 for r in asyncio.run(add_all()))
        on_first = set(first.stats()["activations"])
        on_second = set(second.stats()["activations"])
        assert on_first.isdisjoint(on_second) and on_first | on_second == set(ids)
        assert min(len(on_first), len(on_second)) >= 50, (len(on_first), len(on_second))

        second.stop()
        c.nodes.remove(second)

        async def get_all() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=30) as client:
                return await asyncio.gather(
                    *(client.post(f"{caller.api}/actors/{TYPE}/{a}/method/Get") for a in ids)
                )

        answers = asyncio.run(get_all())
        assert [r.status_code for r in answers] == [200] * 200
        assert [int(r.text) for r in answers] == list(range(1, 201))
        assert set(first.stats()["activations"]) == set(ids)
    finally:
        c.stop()


# ---------------------------------------------------------------------------------- restarts
@dataclass
class ProcessHost:
    sidecar: SidecarProcess
    app: AppProcess

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.sidecar.http_port}/v1.0"

    def stats(self) -> dict[str, Any]:
        return httpx.get(f"http://127.0.0.1:{self.app.port}/stats", timeout=5).json()


def process_host(folder: Path, app_id: str, actor_type: str, registry: Path) -> ProcessHost:
    port = free_port()
    sidecar = SidecarProcess(app_id, [folder / "res"], app_port=port, registry=registry).start()
    env = {**FAST, "ACTOR_TYPE": actor_type}
    app = AppProcess(APP, port, sidecar.app_env(), extra_env=env, cwd=REPO, name="persist").start()
    wait_until(lambda: sidecar.healthy("/v1.0/healthz"), 20, what="actor host ready")
    return ProcessHost(sidecar, app)


@pytest.fixture(params=["sqlite", "redis"])
def persistent_store(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    redis = request.getfixturevalue("redis_url") if request.param == "redis" else None
    actor_store(tmp_path / "res", request.param, redis)
    return tmp_path


def test_state_and_reminders_survive_restarts(persistent_store: Path) -> None:
    folder = persistent_store
    actor_type = f"Counter{uuid.uuid4().hex[:8]}"  # a persistent store never mixes runs
    registry = folder / "reg"
    app_id = unique("persist")
    node = process_host(folder, app_id, actor_type, registry)
    actor_id = new_id()
    try:
        r = httpx.post(f"{node.api}/actors/{actor_type}/{actor_id}/method/Add", json=5, timeout=30)
        assert r.json() == 5
        # The hosting app and its sidecar stop; a new pair starts on the same store.
        node.app.stop()
        node.sidecar.stop()
        node = process_host(folder, app_id, actor_type, registry)
        r = httpx.post(f"{node.api}/actors/{actor_type}/{actor_id}/method/Add", json=1, timeout=30)
        assert r.json() == 6

        # A reminder keeps firing after the sidecar alone restarts (same ports; the app stays up).
        start = httpx.post(
            f"{node.api}/actors/{actor_type}/{actor_id}/method/StartReminder",
            json={"name": "beat", "period": 0.2},
            timeout=30,
        )
        assert start.status_code == 200
        wait_until(lambda: len(node.stats()["reminders"].get(actor_id, [])) >= 2, 10, what="fires")
        node.sidecar.stop()
        restarted_at = time.time()
        node.sidecar.start()
        wait_until(
            lambda: any(f["at"] > restarted_at for f in node.stats()["reminders"].get(actor_id, [])),
            15,
            what="a reminder fire after the sidecar restart",
        )
        stop = httpx.post(
            f"{node.api}/actors/{actor_type}/{actor_id}/method/StopReminder", json="beat", timeout=30
        )
        assert stop.status_code == 200
    finally:
        node.app.stop()
        node.sidecar.stop()


def test_hosting_actors_without_an_actor_store_is_a_clear_error(tmp_path: Path) -> None:
    write(tmp_path / "res", "state.yaml", state_component("in-memory", tmp_path))
    port = free_port()
    sidecar = SidecarProcess(unique("nostore"), [tmp_path / "res"], app_port=port, registry=tmp_path / "reg")
    sidecar.start()
    app = AppProcess(APP, port, sidecar.app_env(), cwd=REPO, name="nostore").start()
    try:
        wait_until(
            lambda: sidecar.proc is not None and sidecar.proc.poll() is not None, 20, what="sidecar exit"
        )
        assert 'actorStateStore: "true"' in sidecar.log()
    finally:
        app.stop()
        sidecar.stop()


# ---------------------------------------------------------------------------------- reentrancy
def test_reentrant_chain_a_b_a_completes(tmp_path: Path) -> None:
    """A -> B -> A: with reentrancy on, the inner call to A enters A's turn instead of deadlocking."""
    actor_store(tmp_path / "res")
    c = Cluster(tmp_path)
    try:
        host = c.start(unique("reentrant"), {"REENTRANCY": "1"})
        a, b = new_id(), new_id()
        assert call(host, a, "Add", 7).json() == 7
        resp = call(host, a, "CallOther", b)  # a deadlock would run into the call's 30 s deadline
        assert resp.status_code == 200, resp.text
        assert resp.json() == 7
    finally:
        c.stop()


# ---------------------------------------------------------------------------------- launcher replicas
def test_replicas_in_the_run_template_share_the_actor_ids(tmp_path: Path) -> None:
    """`replicas: 2` in dapr.yaml: two instances announce the type and the ids spread over both."""
    actor_store(tmp_path / "res")
    http_port, app_port = free_port(), free_port()
    serve = (
        "import os, uvicorn; uvicorn.run('tests.integration.localdapr.sidecar_apps.actor_app:app', "
        "host='127.0.0.1', port=int(os.environ['APP_PORT']), log_level='warning')"
    )
    template = {
        "version": 1,
        "common": {"resourcesPaths": ["./res"]},
        "apps": [
            {
                "appID": "counter",
                "appDirPath": ".",
                "appPort": app_port,
                "daprHTTPPort": http_port,
                "replicas": 2,
                "command": ["python", "-c", serve],
                "env": {"PYTHONPATH": str(REPO)},
            }
        ],
    }
    (tmp_path / "dapr.yaml").write_text(json.dumps(template))  # JSON is YAML
    proc = subprocess.Popen(
        [sys.executable, "-m", "localdapr", "up", "-f", str(tmp_path / "dapr.yaml")],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    registry = tmp_path / ".localdapr" / "registry"
    try:

        def hosts() -> list[dict[str, Any]]:
            entries = [json.loads(p.read_text()) for p in registry.glob("counter.*.json")]
            return [e for e in entries if TYPE in e["actor_types"]]

        wait_until(lambda: len(hosts()) == 2, 60, what="two replicas hosting CounterActor")
        api = f"http://127.0.0.1:{http_port}/v1.0"
        token = launcher_token(tmp_path, "counter")  # the launcher gives each app's sidecar a token
        for i in range(100):
            r = httpx.post(f"{api}/actors/{TYPE}/m-{i}/method/Add", json=1, timeout=30, headers=token)
            assert r.status_code == 200, r.text
        counts = {a["type"]: a["count"] for a in httpx.get(f"{api}/metadata", headers=token).json()["actors"]}
        assert 10 <= counts[TYPE] <= 90, counts  # the first replica's sidecar hosts only its share
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
