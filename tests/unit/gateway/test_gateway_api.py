"""The gateway's HTTP API over in-memory services and key store: authentication and scopes on every
route (read from its own OpenAPI description), rate limits with Retry-After, forwarding (trace context,
declared query parameters only, the operator taken from the key), the machine view, upstream failures
as 502/503/504, and hostile input refused before any service is called."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from apps.common.contracts import ModelCard
from apps.common.names import ALERTING_APP_ID, INGESTION_APP_ID, TRAINING_APP_ID
from apps.common.profiles import PROFILES, TURBOFAN
from apps.gateway.app import app
from apps.gateway.keys import SCOPES, KeyService
from apps.gateway.ports import Answer, UpstreamUnavailable
from apps.gateway.ratelimit import Rate, TokenBuckets
from apps.gateway.service import Gateway
from apps.gateway.settings import GatewaySettings
from tests.unit.alerting.helpers import snapshot
from tests.unit.gateway.fakes import FakeUpstream, InMemoryKeyStore
from tests.unit.gateway.test_gateway_keys import CHEAP

GENEROUS = Rate(per_second=1000, burst=1000)
JSON = {"content-type": "application/json"}


@dataclass
class Env:
    client: TestClient
    upstream: FakeUpstream
    store: InMemoryKeyStore
    gateway: Gateway
    keys: dict[str, str]  # scope (or "all", "none-of-<scope>") -> key

    def as_(self, who: str) -> dict[str, str]:
        return {"X-API-Key": self.keys[who]}


def make_env(**settings: Any) -> Env:
    upstream, store = FakeUpstream(), InMemoryKeyStore()
    keys = KeyService(store, cost=CHEAP)
    config = GatewaySettings(rates=dict.fromkeys(SCOPES, GENEROUS), **settings)
    gateway = Gateway(upstream, keys, TokenBuckets(), config, PROFILES)
    made = {scope: asyncio.run(keys.create(f"only-{scope}", [scope]))[0] for scope in SCOPES}
    made["all"] = asyncio.run(keys.create("ops@plant-3", list(SCOPES)))[0]
    for scope in SCOPES:
        made[f"none-of-{scope}"] = asyncio.run(keys.create("partial", [s for s in SCOPES if s != scope]))[0]  # type: ignore[misc]
    app.state.gateway = gateway
    return Env(TestClient(app), upstream, store, gateway, made)


@pytest.fixture
def env() -> Iterator[Env]:
    yield make_env()
    del app.state.gateway


# ---------------------------------------------------------------------- every route: 401, 403, allowed
def _routes() -> list[tuple[str, str, str]]:
    spec = app.openapi()
    return [
        (method.upper(), path, op["x-required-scope"])
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
        if "x-required-scope" in op
    ]


_EXAMPLE = {
    "equipment_id": "fd001-001",
    "alert_id": "fd001-001:rul_low:1",
    "job_id": "0123456789ab",
    "name": "turbofan-rul",
}
_BODIES: dict[str, Any] = {
    "/api/v1/readings": [],
    "/api/v1/equipment/{equipment_id}/events": {"kind": "failure"},
    "/api/v1/keys": {"name": "new", "scopes": ["read"]},
    "/api/v1/models/{name}/promote": {"version": 2},
}


def _url(path: str, env: Env) -> str:
    if "{key_id}" in path:  # a real key id, so an allowed call succeeds
        return path.replace("{key_id}", asyncio.run(env.gateway.keys.list())[0].id)
    return re.sub(r"\{(\w+)\}", lambda m: _EXAMPLE[m[1]], path)


def _send(env: Env, method: str, path: str, headers: dict[str, str]) -> Any:
    body = _BODIES.get(path)
    return env.client.request(method, _url(path, env), headers=headers, json=body)


def test_every_public_route_declares_a_scope() -> None:
    assert len(_routes()) >= 20
    unscoped = [
        p for p, ops in app.openapi()["paths"].items() for op in ops.values() if "x-required-scope" not in op
    ]
    assert unscoped == ["/healthz"]


@pytest.mark.parametrize(("method", "path", "scope"), _routes())
def test_a_call_without_a_valid_key_is_a_401_naming_the_scope(
    env: Env, method: str, path: str, scope: str
) -> None:
    for headers in ({}, {"X-API-Key": "vgl_0123456789ab_" + "x" * 43}, {"Authorization": "Bearer nonsense"}):
        answer = _send(env, method, path, headers)
        assert answer.status_code == 401, (headers, answer.text)
        body = answer.json()
        assert "API key" in body["detail"] and body.get("required_scope") == (
            None if scope == "any" else scope
        )
        assert answer.headers["www-authenticate"].startswith("Bearer")
    assert env.upstream.calls == []


@pytest.mark.parametrize(("method", "path", "scope"), [r for r in _routes() if r[2] != "any"])
def test_a_key_without_the_scope_is_a_403_naming_it(env: Env, method: str, path: str, scope: str) -> None:
    answer = _send(env, method, path, env.as_(f"none-of-{scope}"))
    assert answer.status_code == 403, answer.text
    assert answer.json()["required_scope"] == scope and f"'{scope}' scope" in answer.json()["detail"]
    assert env.upstream.calls == []


@pytest.mark.parametrize(("method", "path", "scope"), _routes())
def test_a_key_with_the_scope_gets_through(env: Env, method: str, path: str, scope: str) -> None:
    who = "read" if scope == "any" else scope
    env.upstream.healths["fd001-001"] = snapshot("fd001-001")
    env.upstream.answers[(ALERTING_APP_ID, "v1/alerts")] = Answer(200, b"[]")
    env.upstream.answers[(TRAINING_APP_ID, "v1/models")] = Answer(200, b"[]")
    answer = _send(env, method, path, env.as_(who))
    assert answer.status_code < 400, answer.text


def test_the_bearer_form_works_too(env: Env) -> None:
    answer = env.client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {env.keys['read']}"})
    assert answer.json() == {"key_id": answer.json()["key_id"], "name": "only-read", "scopes": ["read"]}


# ---------------------------------------------------------------------- rate limits
def test_rate_limit_per_key_and_route_with_retry_after() -> None:
    env = make_env()
    try:
        env.gateway.settings.rates["read"] = Rate(per_second=0.5, burst=2)
        fleet = [env.client.get("/api/v1/fleet", headers=env.as_("read")) for _ in range(3)]
        assert [a.status_code for a in fleet] == [200, 200, 429]
        assert fleet[2].headers["retry-after"] == "2" and "rate limit" in fleet[2].json()["detail"]
        assert env.client.get("/api/v1/alerts", headers=env.as_("read")).status_code == 200, "per route"
        assert env.client.get("/api/v1/fleet", headers=env.as_("all")).status_code == 200, "per key"
        assert len(env.upstream.calls) == 4
    finally:
        del app.state.gateway


def test_failed_authentications_are_limited_per_address() -> None:
    env = make_env()
    try:
        env.gateway.settings.auth_failures = Rate(per_second=0.1, burst=2)
        bad = {"X-API-Key": "vgl_0123456789ab_" + "x" * 43}
        codes = [env.client.get("/api/v1/fleet", headers=bad).status_code for _ in range(3)]
        assert codes == [401, 401, 429]
        assert env.client.get("/api/v1/fleet", headers=env.as_("read")).status_code == 429, "not cached yet"
    finally:
        del app.state.gateway


# ---------------------------------------------------------------------- forwarding
def test_request_id_and_trace_context_go_through_dapr_and_come_back(env: Env) -> None:
    parent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    answer = env.client.get(
        "/api/v1/fleet", headers=env.as_("read") | {"traceparent": parent, "X-Request-ID": "client-42"}
    )
    assert answer.headers["x-request-id"] == "client-42"
    assert answer.headers["traceparent"].startswith("00-" + "ab" * 16 + "-")
    [call] = env.upstream.calls
    assert call.headers["traceparent"] == answer.headers["traceparent"] != parent  # a new span, same trace
    assert call.headers["x-request-id"] == "client-42"
    fresh = env.client.get("/healthz", headers={"X-Request-ID": "bad id\n"})
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-request-id"]), "a hostile id is replaced"


def test_only_declared_query_parameters_are_passed_on(env: Env) -> None:
    env.upstream.answers[(ALERTING_APP_ID, "v1/alerts")] = Answer(200, b"[]")
    url = "/api/v1/alerts?state=open&limit=5&equipment_id=fd001-001&admin=true&limit=7"
    assert env.client.get(url, headers=env.as_("read")).status_code == 200
    [call] = env.upstream.calls
    assert call.query == [("equipment_id", "fd001-001"), ("state", "open"), ("limit", "7")]


def test_the_operator_is_the_key_never_the_body(env: Env) -> None:
    ack = env.client.post(
        "/api/v1/alerts/fd001-001:rul_low:1/ack", headers=env.as_("all"), json={"note": "seen"}
    )
    assert ack.status_code == 200
    assert json.loads(env.upstream.calls[0].body) == {"by": "ops@plant-3", "note": "seen"}
    forged = env.client.post(
        "/api/v1/alerts/fd001-001:rul_low:1/resolve", headers=env.as_("all"), json={"by": "someone else"}
    )
    assert forged.status_code == 422 and len(env.upstream.calls) == 1


def test_a_service_error_is_passed_on_and_a_failure_is_a_502(env: Env) -> None:
    alert = (ALERTING_APP_ID, "v1/alerts/fd001-001:rul_low:9")
    env.upstream.answers[alert] = Answer(404, b'{"detail": "no alert fd001-001:rul_low:9"}')
    missing = env.client.get("/api/v1/alerts/fd001-001:rul_low:9", headers=env.as_("read"))
    assert missing.status_code == 404 and missing.json() == {"detail": "no alert fd001-001:rul_low:9"}
    env.upstream.answers[alert] = Answer(500, b"Traceback (most recent call last): secrets")
    failed = env.client.get("/api/v1/alerts/fd001-001:rul_low:9", headers=env.as_("read"))
    assert failed.status_code == 502 and "Traceback" not in failed.text


def test_an_unavailable_service_is_a_503_with_retry_after(env: Env) -> None:
    env.upstream.answers[(INGESTION_APP_ID, "v1/profiles")] = UpstreamUnavailable("ingestion: refused")
    answer = env.client.get("/api/v1/profiles", headers=env.as_("read"))
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert answer.json() == {"detail": "ingestion is unavailable, try again"}


def test_a_slow_service_is_a_504() -> None:
    env = make_env(call_timeout_seconds=0.05)
    try:
        env.upstream.answers[(ALERTING_APP_ID, "v1/fleet")] = 5.0
        answer = env.client.get("/api/v1/fleet", headers=env.as_("read"))
        assert answer.status_code == 504 and "0.05 s" in answer.json()["detail"]
    finally:
        del app.state.gateway


def test_the_key_store_down_is_a_503_not_a_500(env: Env) -> None:
    env.store.down = True
    answer = env.client.get("/api/v1/fleet", headers={"X-API-Key": "vgl_0123456789ab_" + "x" * 43})
    assert answer.status_code == 503 and "key store" in answer.json()["detail"]


# ---------------------------------------------------------------------- the machine view
def _card(version: int) -> ModelCard:
    digest = hashlib.sha256(str(version).encode()).hexdigest()
    return ModelCard(
        name=TURBOFAN.model_name,
        version=version,
        created_at=datetime(2024, 1, version, tzinfo=UTC),
        profile="turbofan",
        feature_names=["f"],
        metrics={"rmse": 12.5},
        training_data_fingerprint=digest,
        rul_cap=125.0,
        n_train_rows=10,
        n_train_units=2,
        onnx_sha256=digest,
    )


def test_the_machine_view_combines_actor_alerts_and_model_card(env: Env) -> None:
    env.upstream.healths["fd001-001"] = snapshot("fd001-001", model_version=2, status="warning")
    env.upstream.histories["fd001-001"] = [
        {"seq": 40, "at": 1.0, "predicted_rul": 60.0, "model_version": 2},
        {"seq": 41, "at": 2.0, "predicted_rul": 48.0, "model_version": 2},
    ]
    alerts = [{"id": "fd001-001:rul_low:1", "state": "open", "severity": "warning"}]
    env.upstream.answers[(ALERTING_APP_ID, "v1/alerts")] = Answer(200, json.dumps(alerts).encode())
    registry = [
        {
            "name": TURBOFAN.model_name,
            "champion": 2,
            "versions": [_card(1).model_dump(mode="json"), _card(2).model_dump(mode="json")],
        }
    ]
    env.upstream.answers[(TRAINING_APP_ID, "v1/models")] = Answer(200, json.dumps(registry).encode())
    view = env.client.get("/api/v1/machines/fd001-001", headers=env.as_("read")).json()
    assert view["health"]["status"] == "warning" and [p["seq"] for p in view["history"]] == [40, 41]
    assert view["alerts"] == alerts and view["model"]["version"] == 2 and view["unavailable"] == []
    alert_call = next(c for c in env.upstream.calls if c.path == "v1/alerts")
    assert ("equipment_id", "fd001-001") in alert_call.query


def test_the_machine_view_names_what_did_not_answer(env: Env) -> None:
    env.upstream.healths["fd001-001"] = snapshot("fd001-001", model_version=1)
    env.upstream.answers[(ALERTING_APP_ID, "v1/alerts")] = UpstreamUnavailable("alerting: refused")
    env.upstream.answers[(TRAINING_APP_ID, "v1/models")] = Answer(200, b"[]")
    view = env.client.get("/api/v1/machines/fd001-001", headers=env.as_("read")).json()
    assert view["alerts"] is None and view["model"] is None
    assert view["unavailable"] == ["alerts: alerting is unavailable, try again"]


def test_an_unknown_machine_is_a_404_and_actors_down_a_503(env: Env) -> None:
    assert env.client.get("/api/v1/machines/never-seen", headers=env.as_("read")).status_code == 404
    env.upstream.actors_down = True
    down = env.client.get("/api/v1/machines/fd001-001", headers=env.as_("read"))
    assert down.status_code == 503 and down.headers["retry-after"] == "1"


# ---------------------------------------------------------------------- keys over the API
def test_keys_are_created_once_listed_without_secrets_and_revoked(env: Env) -> None:
    made = env.client.post(
        "/api/v1/keys", headers=env.as_("admin"), json={"name": "line-4", "scopes": ["ingest"]}
    )
    assert made.status_code == 201
    key, key_id = made.json()["key"], made.json()["info"]["id"]
    assert env.client.get("/api/v1/whoami", headers={"X-API-Key": key}).json()["name"] == "line-4"
    listing = env.client.get("/api/v1/keys", headers=env.as_("admin"))
    assert key not in listing.text and "hash" not in listing.text and "salt" not in listing.text
    revoked = env.client.delete(f"/api/v1/keys/{key_id}", headers=env.as_("admin"))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    assert env.client.get("/api/v1/whoami", headers={"X-API-Key": key}).status_code == 401
    assert env.client.delete("/api/v1/keys/0123456789ab", headers=env.as_("admin")).status_code == 404


# ---------------------------------------------------------------------- hostile input
def test_deeply_nested_readings_are_a_400_before_ingestion(env: Env) -> None:
    deep = b"[" * 50_000 + b"]" * 50_000
    answer = env.client.post("/api/v1/readings", content=deep, headers=env.as_("ingest") | JSON)
    assert answer.status_code == 400 and env.upstream.calls == []


def test_a_text_plain_body_is_a_415(env: Env) -> None:
    headers = env.as_("ingest") | {"content-type": "text/plain"}
    assert env.client.post("/api/v1/readings", content=b"[]", headers=headers).status_code == 415
    assert env.upstream.calls == []


def test_a_big_body_on_a_small_route_is_a_413(env: Env) -> None:
    big = {"note": "x" * 100_000}
    answer = env.client.post("/api/v1/alerts/fd001-001:rul_low:1/ack", headers=env.as_("operate"), json=big)
    assert answer.status_code == 413 and env.upstream.calls == []


def test_a_junk_body_does_not_start_a_training_job(env: Env) -> None:
    for junk in ({"n_estimators": 10**9}, {"profile": "toaster"}, {"source": "archive", "dataset": "FD002"}):
        answer = env.client.post("/api/v1/training-jobs", headers=env.as_("admin"), json=junk)
        assert answer.status_code == 422, junk
    assert env.upstream.calls == []


def test_a_training_request_is_passed_on_with_the_fields_given(env: Env) -> None:
    body = {"source": "dataset", "dataset": "FD002", "force": True}
    assert env.client.post("/api/v1/training-jobs", headers=env.as_("admin"), json=body).status_code == 200
    assert env.client.post("/api/v1/training-jobs", headers=env.as_("admin")).status_code == 200
    first, bare = env.upstream.calls
    assert (first.app_id, first.path, first.verb) == (TRAINING_APP_ID, "v1/train", "POST")
    assert json.loads(first.body) == body and bare.body == b""


def test_promote_and_rollback_are_made_in_the_key_s_name(env: Env) -> None:
    promote = "/api/v1/models/turbofan-rul/promote"
    answer = env.client.post(promote, headers=env.as_("all"), json={"version": 2, "note": "field trial"})
    assert answer.status_code == 200
    back = env.client.post("/api/v1/models/turbofan-rul/rollback", headers=env.as_("all"))
    chosen = env.client.post(
        "/api/v1/models/turbofan-rul/rollback", headers=env.as_("all"), json={"version": 1, "note": "late"}
    )
    assert back.status_code == 200 and chosen.status_code == 200
    sent = [(c.path, c.verb, json.loads(c.body)) for c in env.upstream.calls]
    assert sent == [
        (
            "v1/models/turbofan-rul/promote",
            "POST",
            {"version": 2, "by": "ops@plant-3", "note": "field trial"},
        ),
        ("v1/models/turbofan-rul/rollback", "POST", {"version": None, "by": "ops@plant-3", "note": ""}),
        ("v1/models/turbofan-rul/rollback", "POST", {"version": 1, "by": "ops@plant-3", "note": "late"}),
    ]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"version": 2, "by": "someone else"}, "by"),
        ({"version": "2"}, "version"),
        ({"version": 0}, "version"),
        ({}, "version"),
        ({"version": 2, "note": "x" * 501}, "note"),
    ],
)
def test_a_bad_promote_body_is_a_422_naming_the_field(env: Env, body: dict[str, Any], says: str) -> None:
    answer = env.client.post("/api/v1/models/turbofan-rul/promote", headers=env.as_("operate"), json=body)
    assert answer.status_code == 422 and says in answer.text, answer.text
    assert env.upstream.calls == []


def test_model_routes_go_to_training_and_a_bad_name_never_does(env: Env) -> None:
    assert env.client.get("/api/v1/models/turbofan-rul", headers=env.as_("read")).status_code == 200
    assert env.client.get("/api/v1/training-jobs?limit=5&all=1", headers=env.as_("read")).status_code == 200
    view, jobs = env.upstream.calls
    assert (view.app_id, view.path, jobs.path, jobs.query) == (
        TRAINING_APP_ID,
        "v1/models/turbofan-rul",
        "v1/jobs",
        [("limit", "5")],
    )
    for bad in ("..", "-x", "a b", "x" * 65):
        assert env.client.get(f"/api/v1/models/{bad}", headers=env.as_("read")).status_code in (404, 422), bad
    refused = env.client.post("/api/v1/models/..%2F../rollback", headers=env.as_("operate"))
    assert refused.status_code in (404, 422) and len(env.upstream.calls) == 2


@pytest.mark.parametrize("bad", ["..", ".", "a||b", "a%2Fb", "a%00b", "x" * 10_000])
def test_ids_that_would_be_keys_or_paths_never_reach_a_service(env: Env, bad: str) -> None:
    for url in (
        f"/api/v1/machines/{bad}",
        f"/api/v1/alerts/{bad}:rul_low:1",
        f"/api/v1/equipment/{bad}/events",
    ):
        assert env.client.get(url, headers=env.as_("read")).status_code in (404, 422), url
    assert env.upstream.calls == []
