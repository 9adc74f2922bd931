"""Every app's /docs (Swagger UI) and /redoc load their assets from the app itself, never from a CDN
(FastAPIOffline serves the copies the fastapi-offline package ships). The dashboard's is checked
in tests/e2e/test_dashboard.py: importing it mounts NiceGUI, which the unit tests keep out of this
process's globals."""

from __future__ import annotations

import importlib
import re

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize(
    "service", ["ingestion", "equipment", "inference", "training", "alerting", "archiver"]
)
def test_docs_are_served_offline(service: str) -> None:
    app = importlib.import_module(f"apps.{service}.app").app
    client = TestClient(app)  # no lifespan: no sidecar needed to serve the docs
    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200, page
        assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert assets and all(a.startswith("/static-offline-docs/") for a in assets), (page, assets)
        for asset in assets:
            assert client.get(asset).status_code == 200, asset
    assert client.get("/openapi.json").json()["info"]["title"] == f"Vigil {service}"
