"""Every Dapr name in dapr.yaml, the component files and k8s/ must be one that names.py defines."""

from __future__ import annotations

from pathlib import Path

import yaml

from apps.common import names

REPO = Path(__file__).resolve().parents[3]
COMPONENT_NAMES = {
    names.STATE_STORE,
    names.MODEL_STORE,
    names.PUBSUB,
    names.SECRET_STORE,
    names.ARCHIVE_BINDING,
    names.NOTIFICATIONS_BINDING,
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
        REPO / "k8s" / "components.yaml",
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


def test_k8s_deployments_use_known_app_ids() -> None:
    ids = {
        d["spec"]["template"]["metadata"]["annotations"]["dapr.io/app-id"]
        for d in docs(REPO / "k8s" / "apps.yaml")
        if d["kind"] == "Deployment"
    }
    assert ids == set(names.ALL_APP_IDS)


def test_resiliency_targets_known_apps_and_components() -> None:
    for file in (REPO / "dapr-config" / "resiliency.yaml", REPO / "k8s" / "resiliency.yaml"):
        targets = docs(file)[0]["spec"]["targets"]
        assert set(targets.get("apps", {})) <= set(names.ALL_APP_IDS)
        assert set(targets.get("components", {})) <= COMPONENT_NAMES
