"""The gateway as a real process behind a real localdapr sidecar, and `vigil keys` as an operator runs
it: a key made by the CLI (printed once, stored as a salted hash in the state store) opens the API, a
revoked one no longer does; a call to a service that is not running is a 503 with Retry-After and the
trace context, never a 500."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from apps.common.names import GATEWAY_APP_ID, STATE_STORE
from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port
from tests.integration.localdapr.components import component, write

pytestmark = pytest.mark.sidecar

REPO = Path(__file__).resolve().parents[3]


@dataclass
class Running:
    resources: Path
    url: str

    def keys(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "vigil.cli", "keys", "--resources", str(self.resources), *args]
        return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("gateway")
    resources = tmp / "res"
    db = {"connectionString": str(tmp / "state.db")}
    write(resources, "statestore.yaml", component(STATE_STORE, "state.sqlite", db, scopes=[GATEWAY_APP_ID]))
    port = free_port()
    sidecar = SidecarThread(
        SidecarOptions(
            app_id=GATEWAY_APP_ID, resources_paths=[resources], app_port=port, registry_dir=tmp / "reg"
        )
    ).start()
    app: AppProcess | None = None
    try:
        env = {"VIGIL_GATEWAY_KEY_CACHE_SECONDS": "0", "VIGIL_GATEWAY_CALL_TIMEOUT_SECONDS": "5"}
        app = AppProcess(
            "apps.gateway.app:app", port, sidecar.options.app_env(), env, cwd=REPO, name="gateway"
        )
        app.start()
        sidecar.wait_app_ready()
        yield Running(resources, f"http://127.0.0.1:{port}")
    finally:
        if app is not None:
            app.stop()
        sidecar.stop()


def test_a_key_made_by_the_cli_opens_the_api_until_it_is_revoked(gateway: Running) -> None:
    made = gateway.keys("create", "--name", "line-3 ops", "--scope", "read", "--scope", "operate")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("vgl_") and "not shown again" in made.stderr
    me = httpx.get(f"{gateway.url}/api/v1/whoami", headers={"X-API-Key": key}, timeout=10)
    assert me.status_code == 200 and me.json()["scopes"] == ["operate", "read"]
    listed = gateway.keys("list")
    assert me.json()["key_id"] in listed.stdout and key not in listed.stdout
    assert gateway.keys("revoke", me.json()["key_id"]).returncode == 0
    gone = httpx.get(f"{gateway.url}/api/v1/whoami", headers={"X-API-Key": key}, timeout=10)
    assert gone.status_code == 401 and gone.headers["x-request-id"]
    assert gateway.keys("revoke", "0123456789ab").returncode == 1


def key_id_of(key: str) -> str:
    return key.split("_")[1]


def test_nothing_but_hashes_is_stored(gateway: Running) -> None:
    key = gateway.keys("create", "--name", "device", "--scope", "ingest").stdout.strip()
    secret = key.rsplit("_", 1)[1]
    # Through SQLite, never by reading the file: closing a descriptor of the database in this process
    # would drop the sidecar's POSIX locks on it (and it would then read a stale snapshot).
    with contextlib.closing(sqlite3.connect(gateway.resources.parent / "state.db")) as db:
        stored = b"".join(bytes(v) for (v,) in db.execute("SELECT value FROM state"))
    assert key_id_of(key).encode() in stored, "the record is there"
    assert secret.encode() not in stored and key.encode() not in stored


def test_a_service_that_is_not_running_is_a_503_with_the_trace(gateway: Running) -> None:
    key = gateway.keys("create", "--name", "reader", "--scope", "read").stdout.strip()
    answer = httpx.get(f"{gateway.url}/api/v1/fleet", headers={"X-API-Key": key}, timeout=30)
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1", answer.text
    assert answer.json() == {"detail": "alerting is unavailable, try again"}
    assert answer.headers["traceparent"].startswith("00-")


def test_no_key_is_a_401_and_a_wrong_scope_a_403(gateway: Running) -> None:
    assert httpx.get(f"{gateway.url}/api/v1/fleet", timeout=10).json()["required_scope"] == "read"
    key = gateway.keys("create", "--name", "device", "--scope", "ingest").stdout.strip()
    answer = httpx.get(f"{gateway.url}/api/v1/fleet", headers={"X-API-Key": key}, timeout=10)
    assert answer.status_code == 403 and answer.json()["required_scope"] == "read"
