"""The access control policy in dapr-config/config.yaml (and its Kubernetes copy) lets every invocation
the apps make through, and nothing else that matters: each flow below is one the code makes today."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from apps.common import names
from localdapr.acl import AccessControl, spiffe_id

REPO = Path(__file__).resolve().parents[3]
LOCAL = REPO / "dapr-config" / "config.yaml"
K8S = REPO / "k8s" / "base" / "dapr" / "configuration.yaml"

# (caller, callee, verb, path): apps/gateway/api.py, apps/dashboard/ports.py, apps/equipment/ports.py,
# apps/training/inputs.py.
ALLOWED = [
    (names.GATEWAY_APP_ID, names.INGESTION_APP_ID, "POST", "v1/readings"),
    (names.GATEWAY_APP_ID, names.INGESTION_APP_ID, "POST", "v1/equipment/fd001-001/events"),
    (names.GATEWAY_APP_ID, names.INGESTION_APP_ID, "GET", "v1/equipment/fd001-001/events"),
    (names.GATEWAY_APP_ID, names.INGESTION_APP_ID, "GET", "v1/profiles"),
    (names.GATEWAY_APP_ID, names.ALERTING_APP_ID, "GET", "v1/fleet"),
    (names.GATEWAY_APP_ID, names.ALERTING_APP_ID, "DELETE", "v1/fleet/fd001-001"),
    (names.GATEWAY_APP_ID, names.ALERTING_APP_ID, "GET", "v1/alerts"),
    (names.GATEWAY_APP_ID, names.ALERTING_APP_ID, "GET", "v1/alerts/a-1"),
    (names.GATEWAY_APP_ID, names.ALERTING_APP_ID, "POST", "v1/alerts/a-1/ack"),
    (names.GATEWAY_APP_ID, names.ALERTING_APP_ID, "POST", "v1/alerts/a-1/resolve"),
    (names.GATEWAY_APP_ID, names.ALERTING_APP_ID, "GET", "v1/dead-letters"),
    (names.GATEWAY_APP_ID, names.ALERTING_APP_ID, "GET", "v1/notifications"),
    (names.GATEWAY_APP_ID, names.TRAINING_APP_ID, "GET", "v1/models"),
    (names.GATEWAY_APP_ID, names.TRAINING_APP_ID, "POST", "v1/train"),
    (names.GATEWAY_APP_ID, names.TRAINING_APP_ID, "GET", "v1/jobs/j-1"),
    (names.GATEWAY_APP_ID, names.TRAINING_APP_ID, "GET", "v1/jobs"),
    (names.GATEWAY_APP_ID, names.TRAINING_APP_ID, "GET", "v1/models/turbofan-rul"),
    (names.GATEWAY_APP_ID, names.TRAINING_APP_ID, "POST", "v1/models/turbofan-rul/promote"),
    (names.GATEWAY_APP_ID, names.TRAINING_APP_ID, "POST", "v1/models/turbofan-rul/rollback"),
    # training's drift reads what inference predicted with the champion (apps/training/inputs.py)
    (names.TRAINING_APP_ID, names.INFERENCE_APP_ID, "GET", "v1/models/turbofan-rul/inputs"),
    (names.GATEWAY_APP_ID, names.INFERENCE_APP_ID, "GET", "v1/models"),
    (names.GATEWAY_APP_ID, names.ARCHIVER_APP_ID, "GET", "v1/archive/backlog"),
    (names.GATEWAY_APP_ID, names.ARCHIVER_APP_ID, "POST", "v1/archive/flush"),
    (names.EQUIPMENT_APP_ID, names.INFERENCE_APP_ID, "POST", "v1/predict"),
    (names.EQUIPMENT_APP_ID, names.INFERENCE_APP_ID, "GET", "v1/models/turbofan-rul"),
    (names.DASHBOARD_APP_ID, names.ALERTING_APP_ID, "GET", "v1/fleet"),
    (names.DASHBOARD_APP_ID, names.ALERTING_APP_ID, "GET", "v1/alerts"),
    (names.DASHBOARD_APP_ID, names.ALERTING_APP_ID, "GET", "v1/alerts/a-1"),
    (names.DASHBOARD_APP_ID, names.ALERTING_APP_ID, "GET", "v1/notifications"),
    (names.DASHBOARD_APP_ID, names.ALERTING_APP_ID, "POST", "v1/alerts/a-1/ack"),
    (names.DASHBOARD_APP_ID, names.ALERTING_APP_ID, "POST", "v1/alerts/a-1/resolve"),
    (names.DASHBOARD_APP_ID, names.ALERTING_APP_ID, "DELETE", "v1/fleet/fd001-001"),
    (names.DASHBOARD_APP_ID, names.TRAINING_APP_ID, "GET", "v1/models"),
    (names.DASHBOARD_APP_ID, names.INFERENCE_APP_ID, "GET", "v1/models"),
    (names.DASHBOARD_APP_ID, names.GATEWAY_APP_ID, "GET", "api/v1/whoami"),  # sign-in keys
]
DENIED = [
    # Apps that invoke nobody (training: nothing but inference's counts), whatever else they try.
    *[
        (app, names.ALERTING_APP_ID, "POST", "v1/alerts/a-1/ack")
        for app in (
            names.TRAINING_APP_ID,
            names.INGESTION_APP_ID,
            names.INFERENCE_APP_ID,
            names.ARCHIVER_APP_ID,
            names.ALERTING_APP_ID,
        )
    ],
    (names.TRAINING_APP_ID, names.INFERENCE_APP_ID, "POST", "v1/predict"),
    (names.TRAINING_APP_ID, names.INFERENCE_APP_ID, "GET", "v1/models/turbofan-rul"),
    (names.TRAINING_APP_ID, names.INFERENCE_APP_ID, "GET", "v1/models"),
    (names.TRAINING_APP_ID, names.INFERENCE_APP_ID, "POST", "v1/models/turbofan-rul/inputs"),
    (names.TRAINING_APP_ID, names.TRAINING_APP_ID, "POST", "v1/models/turbofan-rul/promote"),
    (names.EQUIPMENT_APP_ID, names.INFERENCE_APP_ID, "GET", "v1/models/turbofan-rul/inputs"),
    (names.DASHBOARD_APP_ID, names.TRAINING_APP_ID, "POST", "v1/models/turbofan-rul/promote"),
    (names.DASHBOARD_APP_ID, names.TRAINING_APP_ID, "POST", "v1/models/turbofan-rul/rollback"),
    # Only what each caller needs.
    (names.EQUIPMENT_APP_ID, names.ALERTING_APP_ID, "POST", "v1/alerts/a-1/ack"),
    (names.EQUIPMENT_APP_ID, names.TRAINING_APP_ID, "POST", "v1/train"),
    (names.DASHBOARD_APP_ID, names.TRAINING_APP_ID, "POST", "v1/train"),
    (names.DASHBOARD_APP_ID, names.INGESTION_APP_ID, "POST", "v1/readings"),
    (names.DASHBOARD_APP_ID, names.GATEWAY_APP_ID, "POST", "api/v1/keys"),
    # Nobody reaches an app's Dapr routes by invocation: a forged delivery or actor call.
    (names.GATEWAY_APP_ID, names.ALERTING_APP_ID, "POST", "events/alerts"),
    (names.GATEWAY_APP_ID, names.EQUIPMENT_APP_ID, "DELETE", "actors/EquipmentActor/fd001-001"),
    (names.GATEWAY_APP_ID, names.TRAINING_APP_ID, "POST", names.RETRAIN_SCHEDULE_BINDING),
    (names.GATEWAY_APP_ID, names.ALERTING_APP_ID, "GET", "dapr/subscribe"),
    (names.GATEWAY_APP_ID, names.ALERTING_APP_ID, "PUT", "v1/alerts/a-1"),
]


def policy(file: Path) -> tuple[AccessControl, str]:
    doc = yaml.safe_load(file.read_text())
    parsed = AccessControl.from_configuration(doc["spec"], str(file))
    assert parsed is not None and parsed.default_action == "deny"
    namespaces = {p.namespace for p in parsed.policies.values()}
    assert len(namespaces) == 1
    return parsed, namespaces.pop()


@pytest.mark.parametrize("file", [LOCAL, K8S], ids=["local", "k8s"])
@pytest.mark.parametrize(("caller", "callee", "verb", "path"), ALLOWED)
def test_every_invocation_the_apps_make_is_allowed(
    file: Path, caller: str, callee: str, verb: str, path: str
) -> None:
    acl, namespace = policy(file)
    assert acl.denial(spiffe_id("public", namespace, caller), path, verb) is None, (caller, callee)


@pytest.mark.parametrize("file", [LOCAL, K8S], ids=["local", "k8s"])
@pytest.mark.parametrize(("caller", "callee", "verb", "path"), DENIED)
def test_everything_else_is_denied(file: Path, caller: str, callee: str, verb: str, path: str) -> None:
    acl, namespace = policy(file)
    assert acl.denial(spiffe_id("public", namespace, caller), path, verb) is not None, (caller, callee)


def test_the_kubernetes_policy_is_the_local_one_in_its_namespace() -> None:
    local = yaml.safe_load(LOCAL.read_text())["spec"]["accessControl"]
    k8s = yaml.safe_load(K8S.read_text())["spec"]["accessControl"]
    kustomization = yaml.safe_load((REPO / "k8s" / "base" / "kustomization.yaml").read_text())
    for p in local["policies"]:
        p["namespace"] = kustomization["namespace"]
    assert k8s == local
