"""Every app is built with FastAPI's native OpenTelemetry off (apps/common/nativetelemetry.py): with it
on, FastAPI asks opentelemetry for its global providers on every request."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.telemetry import _asgi

from apps.common.nativetelemetry import TELEMETRY_OFF

APPS = Path(__file__).resolve().parents[3] / "apps"


def test_every_fastapi_offline_call_passes_telemetry_off() -> None:
    # By the source, so that the dashboard counts too: importing it mounts NiceGUI in this process.
    calls = []
    for path in sorted(APPS.glob("*/app.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "FastAPIOffline":
                telemetry = [k.value for k in node.keywords if k.arg == "telemetry"]
                calls.append((path.parent.name, [ast.unparse(v) for v in telemetry]))
    assert len(calls) == 8, calls
    assert all(telemetry == ["TELEMETRY_OFF"] for _, telemetry in calls), calls


@pytest.mark.parametrize(
    "service", ["ingestion", "equipment", "inference", "training", "alerting", "archiver", "gateway"]
)
def test_app_telemetry_is_off_even_with_providers_configured(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = importlib.import_module(f"apps.{service}.app").app
    # As if OpenTelemetry providers were set up in the process: only the app's own settings keep it off.
    monkeypatch.setattr(_asgi, "_unconfigured", lambda provider: False)
    assert not app._native_telemetry.enabled()
    assert {key: app._telemetry[key] for key in TELEMETRY_OFF} == TELEMETRY_OFF


def test_the_check_would_see_telemetry_on(monkeypatch: pytest.MonkeyPatch) -> None:
    # The test above can fail: an app built without the setting counts as instrumented.
    monkeypatch.setattr(_asgi, "_unconfigured", lambda provider: False)
    assert FastAPI()._native_telemetry.enabled()
