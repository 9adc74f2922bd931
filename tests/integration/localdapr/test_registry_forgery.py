"""Overwriting the model registry's champion through inference's sidecar (issue 10): not served.

The embedded profile's shipped components (modelstore, pubsub, secretstore, modelsigning; the database
and the secret store's file moved to a temporary folder, the file made from the shipped template with
fresh keys) and dapr-config/config.yaml, real localdapr sidecars for training and inference, and the
inference app as a real process. Training registers and promotes a signed model through its sidecar with
the SDK; a forger holding inference's sidecar (which may write `modelstore`: component scopes cannot make
it read-only) writes a champion pointer and artefacts of its own. Inference keeps serving the signed
model, says why on /readyz and counts it on /metrics; the forger cannot read the private key either.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml
from dapr.aio.clients import DaprClient as AioDaprClient
from dapr.clients import DaprClient

from apps.common.names import (
    INFERENCE_APP_ID,
    MODEL_SIGNING_STORE,
    MODEL_STORE,
    PUBSUB,
    SECRET_STORE,
    TOPIC_MODEL_UPDATES,
    TRAINING_APP_ID,
)
from apps.common.registry import DaprModelRegistry, ModelUpdate
from apps.common.signing import PRIVATE_KEY_SECRET, PUBLIC_KEY_SECRET, RecordSigner
from localdapr.secretsfile import ensure_secrets_file
from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port, wait_until
from tests.unit.inference.test_inference_service import MODEL, card, fit

pytestmark = pytest.mark.sidecar

REPO = Path(__file__).resolve().parents[3]
SHIPPED = ("modelstore.yaml", "pubsub.yaml", "secretstore.yaml", "modelsigning.yaml")


def shipped_components(folder: Path) -> tuple[Path, dict[str, Any]]:
    """components/embedded as shipped, its files under `folder`; and the secrets file's content."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "components" / "secrets.template.json", folder / "secrets.template.json")
    assert ensure_secrets_file(folder / "secrets.json")
    for name in SHIPPED:
        doc = yaml.safe_load((REPO / "components" / "embedded" / name).read_text())
        for entry in doc["spec"]["metadata"]:
            if entry["name"] == "connectionString":
                entry["value"] = str(folder / Path(entry["value"]).name)
            if entry["name"] == "secretsFile":
                entry["value"] = str(folder / "secrets.json")
        (folder / name).write_text(yaml.safe_dump(doc))
    return folder, json.loads((folder / "secrets.json").read_text())


@contextlib.contextmanager
def sdk_env(sidecar: SidecarThread) -> Iterator[None]:
    """The SDK waits for the sidecar named by these variables before its first call."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAPR_HTTP_PORT", str(sidecar.http_port))
        mp.setenv("DAPR_GRPC_PORT", str(sidecar.grpc_port))
        yield


@dataclass
class Platform:
    training: SidecarThread
    inference: SidecarThread
    app: AppProcess
    secrets: dict[str, Any]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.app.port}"

    @contextlib.contextmanager
    def client(self, sidecar: SidecarThread) -> Iterator[DaprClient]:
        with sdk_env(sidecar), DaprClient(address=sidecar.grpc_address) as client:
            yield client

    def signed_registry_call(self, call: Any) -> Any:
        """Run `call(registry)` on a DaprModelRegistry of training's sidecar that signs, as training."""
        signer = RecordSigner(self.secrets["model-signing"]["private-key"])

        async def run() -> Any:
            async with AioDaprClient(address=self.training.grpc_address) as client:
                return await call(DaprModelRegistry(client, signer=signer))

        with sdk_env(self.training):
            return asyncio.run(run())

    def readyz(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.url}/readyz", timeout=10).json())

    def served(self) -> dict[str, int]:
        return dict(httpx.get(f"{self.url}/v1/models", headers=self.as_sidecar(), timeout=10).json())

    def as_sidecar(self) -> dict[str, str]:
        return {}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("registry-forgery")
    resources, secrets = shipped_components(tmp / "components")
    sidecars: list[SidecarThread] = []
    app: AppProcess | None = None
    try:
        options = {
            "resources_paths": [resources],
            "registry_dir": tmp / "registry",
            "config_file": REPO / "dapr-config" / "config.yaml",
        }
        training = SidecarThread(SidecarOptions(app_id=TRAINING_APP_ID, **options)).start()
        sidecars.append(training)
        port = free_port()
        inference = SidecarThread(SidecarOptions(app_id=INFERENCE_APP_ID, app_port=port, **options)).start()
        sidecars.append(inference)
        platform = Platform(training, inference, None, secrets)  # type: ignore[arg-type]
        # The signed model inference is to serve, registered and promoted as training does it.
        model_v1, onnx_v1 = fit(1)
        platform.signed_registry_call(lambda r: r.register(card(1, onnx_v1), onnx_v1))
        platform.signed_registry_call(lambda r: r.set_champion(MODEL, 1, {"action": "gate"}))
        env = {
            **inference.options.app_env(),
            "VIGIL_INFERENCE_MODEL_NAMES": json.dumps([MODEL]),
            # The fallback poll, so a forged pointer written without an announcement is seen too.
            "VIGIL_INFERENCE_POLL_SECONDS": "0.3",
        }
        app = AppProcess("apps.inference.app:app", port, env, cwd=REPO, name="inference").start()
        inference.wait_app_ready(60)
        platform.app = app
        wait_until(lambda: platform.readyz().get("models") == {MODEL: 1}, timeout=60, what="v1 served")
        yield platform
    finally:
        if app is not None:
            app.stop()
        for sidecar in sidecars:
            sidecar.stop()


def forge(platform: Platform, writes: dict[str, bytes | str]) -> None:
    """Write `writes` into modelstore through inference's sidecar (the SDK), then announce an update."""
    with platform.client(platform.inference) as client:
        for key, value in writes.items():
            client.save_state(MODEL_STORE, key, value)
    with platform.client(platform.training) as client:
        # training may publish model-updates (inference may not): the announcement makes inference look
        update = ModelUpdate(name=MODEL, version=2, promoted=True)
        client.publish_event(
            PUBSUB, TOPIC_MODEL_UPDATES, update.model_dump_json(), data_content_type="application/json"
        )


def refused_with(platform: Platform, words: str) -> dict[str, Any]:
    def seen() -> dict[str, Any] | None:
        body = platform.readyz()
        return body if words in body.get("refused", {}).get(MODEL, "") else None

    return wait_until(seen, timeout=30, what=f"readyz reports the refusal ({words})")


def test_a_champion_pointer_written_through_inferences_sidecar_is_not_served(platform: Platform) -> None:
    _, onnx = fit(2)
    forge(
        platform,
        {
            f"models/{MODEL}/v/2/onnx": onnx,
            f"models/{MODEL}/v/2/card": card(2, onnx).model_dump_json(),
            f"models/{MODEL}/champion": json.dumps({"version": 2}),
        },
    )
    body = refused_with(platform, "is not signed")
    assert body["models"] == {MODEL: 1} and body["ready"] is True
    assert platform.served() == {MODEL: 1}
    metrics = httpx.get(f"{platform.url}/metrics", timeout=10).text
    assert f'vigil_model_records_refused_total{{model="{MODEL}"}}' in metrics


def test_a_pointer_with_a_made_up_signature_or_a_signed_pointer_to_a_forged_artefact_is_not_served(
    platform: Platform,
) -> None:
    forge(
        platform,
        {f"models/{MODEL}/champion": json.dumps({"version": 2, "serial": 2**62, "signature": "AAAA"})},
    )
    refused_with(platform, "does not verify")
    assert platform.served() == {MODEL: 1}
    # A champion pointer genuinely signed by training, to a version whose artefact the forger replaced
    # after it was registered: the version's signature no longer covers its bytes.
    _, onnx_v3 = fit(3)
    platform.signed_registry_call(lambda r: r.register(card(3, onnx_v3), onnx_v3))
    _, other = fit(4)
    forge(platform, {f"models/{MODEL}/v/3/onnx": other})
    platform.signed_registry_call(lambda r: r.promote(MODEL, 3))
    refused_with(platform, f"{MODEL} v3: the signature does not verify")
    assert platform.served() == {MODEL: 1}


def test_a_signed_champion_is_served_after_a_refusal(platform: Platform) -> None:
    _, onnx = fit(5)
    platform.signed_registry_call(lambda r: r.register(card(5, onnx), onnx))
    platform.signed_registry_call(lambda r: r.promote(MODEL, 5))
    wait_until(lambda: platform.readyz().get("models") == {MODEL: 5}, timeout=30, what="v5 served")
    assert "refused" not in platform.readyz()


def test_the_private_key_cannot_be_read_through_inferences_sidecar(platform: Platform) -> None:
    with platform.client(platform.inference) as client:
        # component scopes: inference has no modelsigning store at all (daprd's answer)
        with pytest.raises(grpc.RpcError) as missing:
            client.get_secret(MODEL_SIGNING_STORE, PRIVATE_KEY_SECRET)
        assert missing.value.code() is grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        # secret scopes: through secretstore only the public key may be read
        with pytest.raises(grpc.RpcError) as denied:
            client.get_secret(SECRET_STORE, PRIVATE_KEY_SECRET)
        assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
        # the public half is readable: inference verifies with it
        public = client.get_secret(SECRET_STORE, PUBLIC_KEY_SECRET).secret
        assert public == {PUBLIC_KEY_SECRET: platform.secrets["model-signing"]["public-key"]}
    with platform.client(platform.training) as client:
        got = client.get_secret(MODEL_SIGNING_STORE, PRIVATE_KEY_SECRET).secret
        assert got == {PRIVATE_KEY_SECRET: platform.secrets["model-signing"]["private-key"]}
