"""The model lifecycle through real localdapr sidecars under the shipped access policy
(dapr-config/config.yaml): the gateway, training and inference apps as processes, each behind its own
sidecar, the registry and the job log in one SQLite `modelstore`, an API key made by `vigil keys`.

Through the gateway: training jobs are listed, a forced second job becomes champion, an operator rolls
back and promotes in the key's name, refusals come back as training gave them. Drift: inference counts
the rows it predicts (sent through a sidecar of app id `equipment`, as the actors send them) and
training measures the champion's drift on those counts, asking inference through its sidecar (the one
call the policy lets training make). Restart: training killed while a job runs and another waits; the
new process shows both failed as interrupted once their lease expired, and the jobs before them as they
ended.

A module of its own: pubsub.in-memory is process-wide (see tests/integration/alerting).
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprHttpError

from apps.common.names import (
    ARCHIVE_BINDING,
    EQUIPMENT_APP_ID,
    GATEWAY_APP_ID,
    INFERENCE_APP_ID,
    MODEL_STORE,
    PUBSUB,
    STATE_STORE,
    TRAINING_APP_ID,
)
from apps.common.profiles import TURBOFAN
from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port, wait_until
from tests.integration.localdapr.components import component, write

pytestmark = pytest.mark.sidecar

REPO = Path(__file__).resolve().parents[3]
NAME = TURBOFAN.model_name
ROWS = 150  # over training's default VIGIL_TRAINING_DRIFT_MIN_INFERENCE_ROWS (100)


def keypair() -> tuple[str, str]:
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes_raw()
    return base64.b64encode(private.private_bytes_raw()).decode(), base64.b64encode(public).decode()


@dataclass
class Platform:
    root: Path
    sidecars: dict[str, SidecarThread]
    apps: dict[str, AppProcess]
    envs: dict[str, dict[str, str]]
    url: str
    key: str
    started: list[str] = field(default_factory=list)

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-API-Key": self.key}
        return httpx.request(method, f"{self.url}/api/v1{path}", headers=headers, timeout=30, **kwargs)

    def job(self, job_id: str) -> dict[str, Any]:
        answer = self.api("GET", f"/training-jobs/{job_id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json())

    def finished(self, job_id: str, timeout: float = 300) -> dict[str, Any]:
        return dict(
            wait_until(
                lambda: (j := self.job(job_id))["status"] not in ("queued", "running") and j,
                timeout,
                what=f"training job {job_id} done",
            )
        )

    @contextlib.contextmanager
    def through(self, app_id: str) -> Iterator[DaprClient]:
        """The official SDK on `app_id`'s sidecar: its calls are that app's, for the access policy."""
        sidecar = self.sidecars[app_id]
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DAPR_HTTP_PORT", str(sidecar.http_port))  # HTTP service invocation goes there
            mp.setenv("DAPR_GRPC_PORT", str(sidecar.grpc_port))
            with DaprClient(address=sidecar.grpc_address) as client:
                yield client

    def invoke(self, caller: str, callee: str, path: str, verb: str = "GET", body: Any = None) -> Any:
        data = b"" if body is None else json.dumps(body).encode()
        with self.through(caller) as client:
            answer = client.invoke_method(
                callee, path, data, content_type="application/json" if data else None, http_verb=verb
            )
        return json.loads(answer.data)

    def start_training(self) -> None:
        port = self.sidecars[TRAINING_APP_ID].options.app_port
        assert port is not None
        env = self.sidecars[TRAINING_APP_ID].options.app_env()
        app = AppProcess(
            "apps.training.app:app", port, env, self.envs[TRAINING_APP_ID], cwd=REPO, name="training"
        )
        self.apps[TRAINING_APP_ID] = app.start()


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    root = tmp_path_factory.mktemp("learning-loop")
    res, archive = root / "res", root / "archive"
    archive.mkdir()
    write(
        res,
        "statestore.yaml",
        component(STATE_STORE, "state.sqlite", {"connectionString": str(root / "s.db")}),
    )
    models = {"connectionString": str(root / "m.db"), "keyPrefix": "name"}
    write(res, "modelstore.yaml", component(MODEL_STORE, "state.sqlite", models))
    write(res, "pubsub.yaml", component(PUBSUB, "pubsub.in-memory", {}))
    write(
        res, "archive.yaml", component(ARCHIVE_BINDING, "bindings.localstorage", {"rootPath": str(archive)})
    )
    made = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "keys", "--resources", str(res), "create", "--name", "ops-7"]
        + ["--scope", "read", "--scope", "operate", "--scope", "admin"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    private, public = keypair()
    envs = {
        TRAINING_APP_ID: {
            "VIGIL_TRAINING_SIGNING_KEY": private,
            "VIGIL_TRAINING_N_ESTIMATORS": "10",
            "VIGIL_TRAINING_N_SEEDS": "1",
            "VIGIL_TRAINING_JOB_SAVE_SECONDS": "0.2",
            # the killed process's jobs are failed once their lease expires (swept every half lease)
            "VIGIL_TRAINING_JOB_LEASE_SECONDS": "2",
        },
        INFERENCE_APP_ID: {
            "VIGIL_INFERENCE_VERIFY_KEY": public,
            "VIGIL_INFERENCE_MODEL_NAMES": json.dumps([NAME]),
            "VIGIL_INFERENCE_POLL_SECONDS": "1",
        },
        GATEWAY_APP_ID: {"VIGIL_GATEWAY_KEY_CACHE_SECONDS": "60"},
    }
    sidecars: dict[str, SidecarThread] = {}
    apps: dict[str, AppProcess] = {}
    targets = {
        GATEWAY_APP_ID: "apps.gateway.app:app",
        TRAINING_APP_ID: "apps.training.app:app",
        INFERENCE_APP_ID: "apps.inference.app:app",
    }
    try:
        for app_id in (*targets, EQUIPMENT_APP_ID):  # equipment: a sidecar only, to predict as the actors do
            options = SidecarOptions(
                app_id=app_id,
                resources_paths=[res],
                app_port=free_port() if app_id in targets else None,
                registry_dir=root / "reg",
                config_file=REPO / "dapr-config" / "config.yaml",
            )
            sidecars[app_id] = SidecarThread(options).start()
        for app_id, target in targets.items():
            options = sidecars[app_id].options
            assert options.app_port is not None
            app = AppProcess(target, options.app_port, options.app_env(), envs[app_id], cwd=REPO, name=app_id)
            apps[app_id] = app.start()
            sidecars[app_id].wait_app_ready()
        gateway_port = apps[GATEWAY_APP_ID].port
        yield Platform(root, sidecars, apps, envs, f"http://127.0.0.1:{gateway_port}", made.stdout.strip())
    finally:
        for app in apps.values():
            app.stop()
        for sidecar in sidecars.values():
            sidecar.stop()


def champion_card(platform: Platform) -> dict[str, Any]:
    view = platform.api("GET", f"/models/{NAME}").json()
    return next(c for c in view["versions"] if c["version"] == view["champion"])


def test_jobs_and_champions_through_the_gateway(platform: Platform) -> None:
    first = wait_until(
        lambda: (j := platform.api("GET", "/training-jobs").json()) and j[0],
        60,
        what="the start-up job listed",
    )
    assert first["trigger"] == "startup"
    assert platform.finished(first["id"])["status"] == "succeeded"
    started = platform.api("POST", "/training-jobs", json={"source": "dataset", "force": True, "note": "v2"})
    assert started.status_code == 202, started.text
    second = platform.finished(started.json()["id"])
    assert second["status"] == "succeeded" and second["promoted"] is True
    listed = platform.api("GET", "/training-jobs", params={"limit": 1}).json()
    assert [j["id"] for j in listed] == [second["id"]]

    back = platform.api("POST", f"/models/{NAME}/rollback", json={"note": "v2 alarms late"})
    assert back.status_code == 200, back.text
    assert (back.json()["version"], back.json()["previous"], back.json()["by"]) == (1, 2, "ops-7")
    again = platform.api("POST", f"/models/{NAME}/promote", json={"version": 2, "note": "fixed"})
    assert again.status_code == 200 and again.json()["by"] == "ops-7" and again.json()["action"] == "promote"
    twice = platform.api("POST", f"/models/{NAME}/promote", json={"version": 2})
    assert twice.status_code == 409 and "already the champion" in twice.json()["detail"]
    unknown = platform.api("POST", f"/models/{NAME}/promote", json={"version": 9})
    assert unknown.status_code == 404 and "has no version 9" in unknown.json()["detail"]
    forged = platform.api("POST", f"/models/{NAME}/promote", json={"version": 1, "by": "someone else"})
    assert forged.status_code == 422

    view = platform.api("GET", f"/models/{NAME}").json()
    assert view["champion"] == 2 and [c["version"] for c in view["versions"]] == [1, 2]
    history = [(c["action"], c["version"], c["by"]) for c in view["champion_history"]]
    assert history[2:] == [("rollback", 1, "ops-7"), ("promote", 2, "ops-7")]
    assert [a for a, _, _ in history[:2]] == ["gate", "gate"] and len(view["decisions"]) == 2
    assert platform.api("GET", "/models/nope").status_code == 404


def test_drift_is_measured_on_what_inference_predicted(platform: Platform) -> None:
    def served_champion() -> dict[str, Any] | None:
        card = champion_card(platform)
        return card if platform.api("GET", "/models/serving").json().get(NAME) == card["version"] else None

    champion = wait_until(served_champion, 120, what="inference serving the champion")
    version = champion["version"]
    with pytest.raises(DaprHttpError) as too_few:  # nothing predicted yet, and no running machine archived
        platform.invoke(GATEWAY_APP_ID, TRAINING_APP_ID, f"v1/models/{NAME}/drift", "POST")
    assert too_few.value.status_code == 409
    assert f"inference counted 0 rows of v{version}" in str(too_few.value.raw_response_bytes)

    refs = champion["feature_reference"]
    shifted = next(r for r in refs if len(r["edges"]) >= 2)
    rows = [[value_for(ref, i, shifted) for ref in refs] for i in range(ROWS)]
    order = [r["name"] for r in refs]
    columns = [order.index(n) for n in champion["feature_names"]]
    request = {
        "model_name": NAME,
        "feature_names": champion["feature_names"],
        "rows": [[row[c] for c in columns] for row in rows],
        "model_version": version,
    }
    predicted = platform.invoke(EQUIPMENT_APP_ID, INFERENCE_APP_ID, "v1/predict", "POST", request)
    assert len(predicted["predictions"]) == ROWS and predicted["model_version"] == version

    counts = platform.invoke(TRAINING_APP_ID, INFERENCE_APP_ID, f"v1/models/{NAME}/inputs")
    assert (counts["version"], counts["rows"]) == (version, ROWS)
    with pytest.raises(DaprHttpError) as denied:  # training may read the counts, not predict
        platform.invoke(TRAINING_APP_ID, INFERENCE_APP_ID, "v1/predict", "POST", request)
    assert denied.value.status_code == 403

    report = platform.invoke(GATEWAY_APP_ID, TRAINING_APP_ID, f"v1/models/{NAME}/drift", "POST")
    assert (report["source"], report["rows"], report["version"], report["fallback"]) == (
        "inference",
        ROWS,
        version,
        None,
    )
    assert (
        report["features"][0]["name"] == shifted["name"] and report["features"][0]["level"] == "significant"
    )
    others = [f for f in report["features"] if f["name"] != shifted["name"]]
    assert max(f["psi"] for f in others) < 0.1  # fed as in training: stable
    kept = platform.api("GET", f"/models/{NAME}").json()["drift"]
    assert kept["source"] == "inference" and kept["max_psi"] == report["max_psi"]


def value_for(ref: dict[str, Any], i: int, shifted: dict[str, Any]) -> float:
    """Row i's value of a feature: above the top edge for the shifted one; for the others, a value in the
    bin that gives row i the training shares (so their drift is nil)."""
    edges = ref["edges"]
    if ref is shifted:
        return float(edges[-1] + (edges[-1] - edges[-2]))
    where, cumulative, b = (i + 0.5) / ROWS, 0.0, 0
    for b, share in enumerate(ref["shares"]):  # noqa: B007
        cumulative += share
        if where < cumulative:
            break
    if b == 0:
        return float(edges[0] - (edges[1] - edges[0]) / 2 if len(edges) > 1 else edges[0])
    if b == len(edges):
        return float(edges[-1] + (edges[-1] - edges[-2]) / 2 if len(edges) > 1 else edges[-1] + 1)
    return float((edges[b - 1] + edges[b]) / 2)


def test_jobs_survive_a_restart_of_training(platform: Platform) -> None:
    before = platform.api("GET", "/training-jobs").json()
    assert before and all(j["status"] == "succeeded" for j in before)
    running = platform.api("POST", "/training-jobs", json={"source": "dataset", "force": True}).json()
    waiting = platform.api("POST", "/training-jobs", json={"source": "dataset", "force": True}).json()
    wait_until(lambda: platform.job(running["id"])["status"] == "running", 60, what="the first job running")
    assert platform.job(waiting["id"])["status"] == "queued"  # one job at a time

    platform.apps[TRAINING_APP_ID].kill()
    platform.start_training()
    platform.sidecars[TRAINING_APP_ID].wait_app_ready()

    for job in (running, waiting):
        after = wait_until(
            lambda j=job: (
                (a := platform.api("GET", f"/training-jobs/{j['id']}")).status_code == 200
                and a.json()["status"] == "failed"
                and a.json()
            ),
            30,
            what="the killed process's job failed once its lease expired",
        )
        assert (
            after["status"] == "failed" and "interrupted by a restart of the training app" in after["error"]
        )
        assert after["finished_at"] is not None
    listed = platform.api("GET", "/training-jobs").json()
    assert [j["id"] for j in listed] == [waiting["id"], running["id"], *(j["id"] for j in before)]
    kept = {j["id"]: j for j in listed}
    for job in before:  # the jobs before the restart, as they ended: card and gate included
        assert kept[job["id"]] == job
        assert platform.job(job["id"])["card"]["version"] == job["version"] and job["version"] is not None
    view = platform.api("GET", f"/models/{NAME}").json()
    assert len(view["versions"]) == 2  # the interrupted jobs registered nothing; no start-up job either


def test_a_long_job_list_comes_back_whole(platform: Platform) -> None:
    """More jobs than one bulk read of the store takes (jobstore.LOAD_CHUNK): archive jobs, which stop
    at once (no run to failure archived), started through the gateway's sidecar as the gateway would."""
    before = len(platform.api("GET", "/training-jobs").json())
    ids = [platform.invoke(GATEWAY_APP_ID, TRAINING_APP_ID, "v1/train", "POST", {})["id"] for _ in range(20)]
    for job_id in ids:
        assert platform.finished(job_id, 60)["status"] == "no_new_data"
    listed = platform.api("GET", "/training-jobs", params={"limit": 1000}).json()
    assert [j["id"] for j in listed[:20]] == ids[::-1] and len(listed) == before + 20
    assert all("card" not in j for j in listed)  # the list leaves cards out; GET /training-jobs/{id} has them
