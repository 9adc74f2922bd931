"""The gateway bounds how many machines a key may introduce (issue 10: "calls that create actors for
arbitrary new ids are bounded, quota per key"): 429 with Retry-After and a JSON error naming the quota,
known machines (let through before, or in alerting's fleet) never count, other keys are not affected,
and the window ends."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from fastapi.testclient import TestClient

from apps.common.names import ALERTING_APP_ID, INGESTION_APP_ID
from apps.common.profiles import PROFILES
from apps.gateway.app import app
from apps.gateway.keys import SCOPES, KeyService
from apps.gateway.ports import Answer
from apps.gateway.quota import NewIdQuota, equipment_ids
from apps.gateway.ratelimit import Rate, TokenBuckets
from apps.gateway.service import Gateway
from apps.gateway.settings import GatewaySettings
from tests.unit.alerting.helpers import snapshot
from tests.unit.gateway.fakes import FakeUpstream, InMemoryKeyStore
from tests.unit.gateway.test_gateway_keys import CHEAP

JSON = {"content-type": "application/json"}


@dataclass
class Env:
    client: TestClient
    upstream: FakeUpstream
    keys: dict[str, str]
    now: list[float]  # the gateway's clock, moved by the test


@pytest.fixture
def env() -> Iterator[Env]:
    upstream, store = FakeUpstream(), InMemoryKeyStore()
    keys = KeyService(store, cost=CHEAP)
    config = GatewaySettings(
        rates=dict.fromkeys(SCOPES, Rate(per_second=1000, burst=1000)),
        new_ids=NewIdQuota(limit=3, window_seconds=60),
        known_ids_refresh_seconds=30,
    )
    now = [1000.0]
    app.state.gateway = Gateway(upstream, keys, TokenBuckets(), config, PROFILES, clock=lambda: now[0])
    made = {name: asyncio.run(keys.create(name, list(SCOPES)))[0] for name in ("line-1", "line-2")}
    yield Env(TestClient(app), upstream, made, now)
    del app.state.gateway


def batch(*ids: str) -> bytes:
    readings = [
        {"equipment_id": i, "timestamp": "2024-01-01T00:00:00Z", "seq": 1, "values": {"sensor_2": 1.0}}
        for i in ids
    ]
    return json.dumps({"readings": readings}).encode()


def send(env: Env, key: str, *ids: str) -> httpx.Response:
    return env.client.post(
        "/api/v1/readings", content=batch(*ids), headers={**JSON, "X-API-Key": env.keys[key]}
    )


def ingested(env: Env) -> int:
    return sum(1 for c in env.upstream.calls if c.app_id == INGESTION_APP_ID)


def test_new_machines_past_the_quota_get_429_naming_it_and_nothing_is_forwarded(env: Env) -> None:
    assert send(env, "line-1", "m-1", "m-2").status_code == 200
    refused = send(env, "line-1", "m-1", "m-3", "m-4")
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "60"
    body = refused.json()
    assert (body["quota"], body["limit"], body["window_seconds"]) == ("new_equipment_ids", 3, 60)
    assert (body["new_ids"], body["used"]) == (2, 2) and "new_equipment_ids" in body["detail"]
    assert ingested(env) == 1, "the refused batch never reached ingestion"
    # Machines it introduced are known: sending for them again costs nothing.
    assert send(env, "line-1", "m-1", "m-2", "m-3").status_code == 200
    assert send(env, "line-1", "m-4").status_code == 429


def test_the_quota_is_per_key_and_per_window(env: Env) -> None:
    assert send(env, "line-1", "a-1", "a-2", "a-3").status_code == 200
    assert send(env, "line-1", "a-4").status_code == 429
    assert send(env, "line-2", "b-1", "b-2").status_code == 200, "another key has its own quota"
    env.now[0] += 45
    late = send(env, "line-1", "a-4")
    assert late.status_code == 429 and late.headers["Retry-After"] == "15"
    env.now[0] += 15
    assert send(env, "line-1", "a-4", "a-5").status_code == 200, "a new window"


def test_machines_in_alerting_fleet_are_not_new(env: Env) -> None:
    """A restarted gateway does not count a running fleet as new machines: it reads alerting's fleet."""
    fleet = {
        "total": 5,
        "counts": {},
        "machines": [snapshot(f"fd-{n}").model_dump(mode="json") for n in range(5)],
    }
    env.upstream.answers[(ALERTING_APP_ID, "v1/fleet")] = Answer(200, json.dumps(fleet).encode())
    assert send(env, "line-1", *(f"fd-{n}" for n in range(5))).status_code == 200
    reads = [c for c in env.upstream.calls if c.path == "v1/fleet"]
    assert len(reads) == 1
    # Beyond the quota and not in the fleet: refused, and the fleet is not read again so soon.
    assert send(env, "line-1", *(f"new-{n}" for n in range(4))).status_code == 429
    assert len([c for c in env.upstream.calls if c.path == "v1/fleet"]) == 1


def test_an_event_for_a_machine_never_seen_counts_as_a_new_machine(env: Env) -> None:
    headers = {**JSON, "X-API-Key": env.keys["line-1"]}
    assert send(env, "line-1", "e-1", "e-2", "e-3").status_code == 200
    known = env.client.post("/api/v1/equipment/e-1/events", json={"kind": "failure"}, headers=headers)
    assert known.status_code == 200
    unknown = env.client.post("/api/v1/equipment/e-9/events", json={"kind": "failure"}, headers=headers)
    assert unknown.status_code == 429 and unknown.json()["quota"] == "new_equipment_ids"


def test_only_ids_that_can_be_machines_are_counted() -> None:
    hostile = json.dumps(
        {
            "readings": [{"equipment_id": x} for x in ("ok-1", "a||b", "../x", "x" * 10_000, 7, None)]
            + ["junk"]
        }
    ).encode()
    assert equipment_ids(hostile) == {"ok-1"}
    assert equipment_ids(b"[{") == set() and equipment_ids(b'{"readings": 5}') == set()
    assert equipment_ids(json.dumps([{"equipment_id": "bare-list"}]).encode()) == {"bare-list"}


def test_a_10_kb_id_is_refused_and_not_logged_whole(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    access = logging.getLogger("gateway.access")
    access.addHandler(caplog.handler)
    try:
        answer = env.client.get("/api/v1/machines/" + "x" * 10_000, headers={"X-API-Key": env.keys["line-1"]})
    finally:
        access.removeHandler(caplog.handler)
    assert answer.status_code == 422 and env.upstream.calls == [], "refused before any service"
    lines = {r.getMessage() for r in caplog.records if r.name == "gateway.access"}
    assert lines and all(len(line) < 400 and " 422 " in line for line in lines)
