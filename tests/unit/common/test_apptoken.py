"""AppTokenGuard: with APP_API_TOKEN set an app answers only requests that carry it (its sidecar's)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from apps.common.apptoken import AppTokenGuard


def make(token: str | None, dapr_routes_only: bool = False) -> TestClient:
    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/alerts/{alert_id}/ack")
    def ack(alert_id: str) -> dict[str, str]:
        return {"acked": alert_id}

    @app.post("/events/alerts")
    def delivery() -> dict[str, str]:
        return {"status": "SUCCESS"}

    app.add_middleware(AppTokenGuard, token=token, dapr_routes_only=dapr_routes_only)
    return TestClient(app)


def test_without_the_token_a_call_is_refused_before_any_route() -> None:
    client = make("s3cret")
    for headers in ({}, {"dapr-api-token": "wrong"}):
        refused = client.post("/v1/alerts/a-1/ack", headers=headers)
        assert refused.status_code == 401
        assert "app token" in refused.json()["detail"]
    assert client.post("/v1/alerts/a-1/ack", headers={"dapr-api-token": "s3cret"}).json() == {"acked": "a-1"}


def test_health_and_the_api_description_stay_open() -> None:
    client = make("s3cret")
    assert client.get("/healthz").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/metrics").status_code == 404  # let through (this app has no such route)


def test_people_facing_apps_guard_only_what_a_sidecar_calls() -> None:
    client = make("s3cret", dapr_routes_only=True)
    assert client.post("/v1/alerts/a-1/ack").status_code == 200
    assert client.post("/events/alerts").status_code == 401
    assert client.post("/events/alerts", headers={"dapr-api-token": "s3cret"}).status_code == 200


def test_no_token_configured_checks_nothing() -> None:
    client = make("")
    assert client.post("/v1/alerts/a-1/ack").status_code == 200
