"""Every Dapr name in dapr.yaml, the component files and k8s/ must be one that names.py defines."""

from __future__ import annotations

from pathlib import Path

import yaml

from apps.common import names
from tests.unit.deploy.kustomize_render import OVERLAYS, render_overlay

REPO = Path(__file__).resolve().parents[3]
COMPONENT_NAMES = {
    names.STATE_STORE,
    names.MODEL_STORE,
    names.PUBSUB,
    names.SECRET_STORE,
    names.MODEL_SIGNING_STORE,
    names.ARCHIVE_BINDING,
    names.NOTIFICATIONS_BINDING,
    names.RETRAIN_SCHEDULE_BINDING,
}


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_run_template_app_ids_are_the_known_ones() -> None:
    template = yaml.safe_load((REPO / "dapr.yaml").read_text())
    assert {a["appID"] for a in template["apps"]} == set(names.ALL_APP_IDS)


def test_component_files_use_known_names_and_scopes() -> None:
    files = [
        *sorted((REPO / "components").glob("*.yaml")),
        *sorted((REPO / "components" / "embedded").glob("*.yaml")),
        *sorted((REPO / "components" / "postgres-rabbitmq").glob("*.yaml")),
        *sorted((REPO / "components" / "mqtt").glob("*.yaml")),
    ]
    seen: dict[str, set[str]] = {}
    for file in files:
        for doc in docs(file):
            if doc.get("kind") != "Component":
                continue
            name = doc["metadata"]["name"]
            assert name in COMPONENT_NAMES, f"{file}: unknown component name {name}"
            seen.setdefault(str(file.parent.name), set()).add(name)
            for scope in doc.get("scopes") or []:
                assert scope in names.ALL_APP_IDS, f"{file}: scope {scope} is not an app id"
    for folder, found in seen.items():
        assert found == COMPONENT_NAMES, f"{folder} defines {found}, expected {COMPONENT_NAMES}"


def test_k8s_overlays_use_known_names() -> None:
    """Each overlay as `kubectl apply -k` applies it: the apps of names.py on dapr.yaml's ports, the
    component names of every profile, scopes, subscriptions and autoscalers naming known apps."""
    ports = {a["appID"]: str(a["appPort"]) for a in yaml.safe_load((REPO / "dapr.yaml").read_text())["apps"]}
    topics = {v for k, v in vars(names).items() if k.startswith("TOPIC_")}
    for profile in OVERLAYS:
        rendered = render_overlay(profile)
        deployments = [d for d in rendered if d["kind"] == "Deployment"]
        annotations = [d["spec"]["template"]["metadata"]["annotations"] for d in deployments]
        assert {a["dapr.io/app-id"]: a["dapr.io/app-port"] for a in annotations} == ports, profile
        components = [d for d in rendered if d["kind"] == "Component"]
        assert {c["metadata"]["name"] for c in components} == COMPONENT_NAMES, profile
        for doc in rendered:
            for scope in doc.get("scopes") or []:
                assert scope in names.ALL_APP_IDS, f"{profile}: {doc['metadata']['name']}: scope {scope}"
            if doc["kind"] == "Subscription":
                assert doc["spec"]["pubsubname"] == names.PUBSUB and doc["spec"]["topic"] in topics
            if doc["kind"] == "HorizontalPodAutoscaler":
                assert doc["spec"]["scaleTargetRef"]["name"] in names.ALL_APP_IDS


def test_resiliency_targets_known_apps_and_components() -> None:
    k8s = REPO / "k8s" / "base" / "dapr" / "resiliency.yaml"
    for file in (REPO / "dapr-config" / "resiliency.yaml", k8s):
        targets = docs(file)[0]["spec"]["targets"]
        assert set(targets.get("apps", {})) <= set(names.ALL_APP_IDS)
        assert set(targets.get("components", {})) <= COMPONENT_NAMES
