"""`kustomize build` for the subset of kustomization fields k8s/ uses, so the tests see what
`kubectl apply -k` applies without a kustomize binary (none installs from PyPI). Where kubectl or
kustomize is on PATH, a test checks this rendering against theirs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
K8S = REPO / "k8s"
# Each deployable profile's overlay and the local components folder it mirrors.
OVERLAYS = {
    "redis": REPO / "components",
    "postgres-rabbitmq": REPO / "components" / "postgres-rabbitmq",
    "mqtt": REPO / "components" / "mqtt",
}
SUPPORTED = {"apiVersion", "kind", "namespace", "resources", "replicas", "images"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}

Doc = dict[str, Any]


def documents(file: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(file.read_text()) if d]


def pod_containers(doc: Doc) -> list[Doc]:
    template = (doc.get("spec") or {}).get("template") or {}
    return list((template.get("spec") or {}).get("containers") or [])


def _set_image(container: Doc, rule: Doc) -> None:
    image = str(container["image"])
    base = image.split("@")[0]
    name = base.rsplit(":", 1)[0] if ":" in base.rsplit("/", 1)[-1] else base  # a registry port has ":" too
    if name != rule["name"]:
        return
    new = rule.get("newName", name)
    if "digest" in rule:
        container["image"] = f"{new}@{rule['digest']}"
    elif "newTag" in rule:
        container["image"] = f"{new}:{rule['newTag']}"
    else:
        container["image"] = image.replace(name, new, 1)


def render(folder: Path) -> list[Doc]:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    assert not unknown, f"{folder}: kustomization fields {unknown} are not rendered by this helper"
    docs: list[Doc] = []
    for entry in kustomization.get("resources") or []:
        path = (folder / entry).resolve()
        if path.is_dir():
            docs += render(path)
        else:
            # kustomize's default load restrictor: a file must be inside the kustomization's folder.
            assert path.is_relative_to(folder.resolve()), f"{folder}: {entry} is outside the kustomization"
            docs += documents(path)
    for rule in kustomization.get("replicas") or []:
        targets = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == rule["name"]]
        assert targets, f"{folder}: replicas for unknown Deployment {rule['name']}"
        for target in targets:
            target["spec"]["replicas"] = rule["count"]
    for rule in kustomization.get("images") or []:
        for doc in docs:
            for container in pod_containers(doc):
                _set_image(container, rule)
    namespace = kustomization.get("namespace")
    if namespace:
        for doc in docs:
            if doc["kind"] == "Namespace":
                doc["metadata"]["name"] = namespace  # as kustomize renames the one Namespace
            elif doc["kind"] not in CLUSTER_SCOPED:
                doc["metadata"]["namespace"] = namespace
    ids = [(d["apiVersion"].split("/")[0], d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(ids) == len(set(ids)), f"{folder}: a resource is defined twice"
    return docs


def render_overlay(profile: str) -> list[Doc]:
    return render(K8S / "overlays" / profile)
