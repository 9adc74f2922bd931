"""No resources path: the sidecar CLI and the launcher load ~/.dapr/components, as `dapr run` does."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from dapr.clients import DaprClient

from localdapr.testing import SidecarProcess, free_port, launcher_token, wait_until
from tests.integration.localdapr.components import component, write

pytestmark = pytest.mark.sidecar

DEFAULT_NOTE = "the default of `dapr run`"


def dapr_runtime(tmp_path: Path) -> dict[str, str]:
    """A DAPR_RUNTIME_PATH whose .dapr/components holds one state store, as `dapr init` would write."""
    write(
        tmp_path / "rt" / ".dapr" / "components",
        "statestore.yaml",
        component("statestore", "state.in-memory", {}),
    )
    return {"DAPR_RUNTIME_PATH": str(tmp_path / "rt")}


def test_sidecar_without_resources_path_loads_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sidecar = SidecarProcess("default-res", [], registry=tmp_path / "reg", env=dapr_runtime(tmp_path))
    sidecar.start()
    try:
        monkeypatch.setenv("DAPR_HTTP_PORT", str(sidecar.http_port))
        with DaprClient(address=sidecar.grpc_address) as client:
            client.save_state("statestore", "k", "v")
            assert client.get_state("statestore", "k").data == b"v"
        assert (
            DEFAULT_NOTE in sidecar.log() and str(tmp_path / "rt" / ".dapr" / "components") in sidecar.log()
        )
    finally:
        sidecar.stop()


def test_sidecar_without_resources_path_or_default_folder_exits_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "localdapr", "sidecar", "--app-id", "x", "--dapr-http-port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DAPR_RUNTIME_PATH": str(tmp_path)},
    )
    assert proc.returncode == 2
    assert str(tmp_path / ".dapr" / "components") in proc.stderr and "dapr init" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_launcher_without_resources_loads_the_default(tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("import time\nwhile True:\n    time.sleep(1)\n")
    http_port = free_port()
    template = {
        "version": 1,
        "apps": [
            {
                "appID": "plain",
                "appDirPath": "./app",
                "command": ["python", "main.py"],
                "daprHTTPPort": http_port,
                "daprGRPCPort": free_port(),
            }
        ],
    }
    (tmp_path / "dapr.yaml").write_text(yaml.safe_dump(template))
    proc = subprocess.Popen(
        [sys.executable, "-m", "localdapr", "up", "-f", str(tmp_path / "dapr.yaml")],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **dapr_runtime(tmp_path)},
    )
    try:
        meta = wait_until(
            lambda: _metadata(http_port, launcher_token(tmp_path, "plain")) or proc.poll() is not None,
            timeout=60,
            what="launcher's sidecar up",
        )
        assert isinstance(meta, dict), "launcher exited early"
        assert [c["name"] for c in meta["components"]] == ["statestore"]
    finally:
        proc.send_signal(signal.SIGINT)
        output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output
    assert DEFAULT_NOTE in output and "[plain] no resources path" in output


def _metadata(port: int, headers: dict[str, str]) -> dict | None:
    try:
        resp = httpx.get(f"http://127.0.0.1:{port}/v1.0/metadata", timeout=1, headers=headers)
    except httpx.HTTPError:
        return None
    return resp.json() if resp.status_code == 200 else None
