"""k8s/, checked offline as `kubectl apply -k k8s/overlays/<profile>` would apply it.

Kubernetes objects validate against the API's OpenAPI schemas (kubernetes-validate ships them; strict:
an unknown field fails, as `kubectl apply` with server-side field validation does); Dapr resources
against the fields the Dapr docs give for Component, Configuration, Resiliency and Subscription. Then
what a deployment needs: every app of names.py with its sidecar annotations, probes, resources and
non-root security context, Services and PodDisruptionBudgets, autoscalers, secrets only referenced,
and Dapr resources equal to what the apps and the local files say.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from typing import Any

import kubernetes_validate
import pytest
import yaml

from apps.common import names
from tests.unit.deploy.kustomize_render import OVERLAYS, REPO, Doc, documents, pod_containers, render_overlay

# The oldest Kubernetes the manifests target and the newest whose schemas kubernetes-validate ships.
K8S_VERSIONS = ["1.29", kubernetes_validate.latest_version()]
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
# The profile decides these types; the secret stores and the archive are the cluster's on every profile.
CLUSTER_ONLY = {names.SECRET_STORE, names.MODEL_SIGNING_STORE, names.ARCHIVE_BINDING}

ANY = object()  # a value of any shape (a map of user-chosen names, free-form metadata)
# Documented fields of the Dapr resources: nested dicts of allowed keys, [schema] for lists,
# {"*": schema} for maps keyed by a user's names, a type or a set of allowed values at the leaves.
METADATA = {"name": str, "namespace": str, "labels": {"*": str}, "annotations": {"*": str}}
NAMES = {"timeout": str, "retry": str, "circuitBreaker": str}
DAPR_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("dapr.io/v1alpha1", "Component"): {
        "apiVersion": str,
        "kind": str,
        "metadata": METADATA,
        "spec": {
            "type": str,
            "version": str,
            "ignoreErrors": bool,
            "initTimeout": str,
            "metadata": [
                {"name": str, "value": str, "secretKeyRef": {"name": str, "key": str}, "envRef": str}
            ],
        },
        "auth": {"secretStore": str},
        "scopes": [str],
    },
    ("dapr.io/v1alpha1", "Configuration"): {
        "apiVersion": str,
        "kind": str,
        "metadata": METADATA,
        "spec": {
            "tracing": {
                "samplingRate": str,
                "stdout": bool,
                "zipkin": {"endpointAddress": str},
                "otel": {"endpointAddress": str, "isSecure": bool, "protocol": {"http", "grpc"}},
            },
            "metrics": {
                "enabled": bool,
                "rules": ANY,
                "recordErrorCodes": bool,
                "latencyDistributionBuckets": [int],
                "http": ANY,
            },
            "logging": ANY,
            "httpPipeline": ANY,
            "appHttpPipeline": ANY,
            "nameResolution": ANY,
            "secrets": ANY,
            "components": ANY,
            "accessControl": ANY,
            "api": ANY,
            "workflow": ANY,
            "features": [{"name": str, "enabled": bool}],
        },
    },
    ("dapr.io/v1alpha1", "Resiliency"): {
        "apiVersion": str,
        "kind": str,
        "metadata": METADATA,
        "scopes": [str],
        "spec": {
            "policies": {
                "timeouts": {"*": str},
                "retries": {
                    "*": {
                        "policy": {"constant", "exponential"},
                        "duration": str,
                        "maxInterval": str,
                        "maxRetries": int,
                        "matching": {"httpStatusCodes": str, "gRPCStatusCodes": str},
                    }
                },
                "circuitBreakers": {"*": {"maxRequests": int, "interval": str, "timeout": str, "trip": str}},
            },
            "targets": {
                "apps": {"*": {**NAMES, "circuitBreakerCacheSize": int}},
                "actors": {"*": {**NAMES, "circuitBreakerScope": str, "circuitBreakerCacheSize": int}},
                "components": {"*": {"inbound": NAMES, "outbound": NAMES}},
            },
        },
    },
    ("dapr.io/v2alpha1", "Subscription"): {
        "apiVersion": str,
        "kind": str,
        "metadata": METADATA,
        "spec": {
            "topic": str,
            "pubsubname": str,
            "routes": {"rules": [{"match": str, "path": str}], "default": str},
            "deadLetterTopic": str,
            "bulkSubscribe": {"enabled": bool, "maxMessagesCount": int, "maxAwaitDurationMs": int},
            "metadata": {"*": str},
        },
        "scopes": [str],
    },
}
# Sidecar annotations Dapr documents (those Vigil uses or might: a typo would be silently ignored).
DAPR_ANNOTATIONS = {
    f"dapr.io/{a}"
    for a in (
        "enabled app-id app-port app-protocol config app-max-concurrency enable-metrics metrics-port "
        "enable-app-health-check app-health-check-path app-health-probe-interval app-health-probe-timeout "
        "app-health-threshold log-level log-as-json enable-api-logging api-token-secret app-token-secret "
        "sidecar-cpu-request sidecar-memory-request sidecar-cpu-limit sidecar-memory-limit "
        "sidecar-listen-addresses graceful-shutdown-seconds block-shutdown-duration max-body-size "
        "read-buffer-size env volume-mounts volume-mounts-rw disable-builtin-k8s-secret-store"
    ).split()
}
SECRET_METADATA = re.compile(r"password|connectionstring|accesskey|secretkey|token|^url$", re.IGNORECASE)
PROFILES = list(OVERLAYS)


def check_shape(value: Any, schema: Any, where: str) -> None:
    if schema is ANY:
        return
    if isinstance(schema, dict):
        assert isinstance(value, dict), f"{where}: expected a mapping"
        for key, item in value.items():
            sub = schema.get(key, schema.get("*"))
            assert sub is not None, f"{where}: {key!r} is not a documented field"
            check_shape(item, sub, f"{where}.{key}")
    elif isinstance(schema, list):
        assert isinstance(value, list), f"{where}: expected a list"
        for i, item in enumerate(value):
            check_shape(item, schema[0], f"{where}[{i}]")
    elif isinstance(schema, set):
        assert value in schema, f"{where}: {value!r} is not one of {sorted(schema)}"
    else:
        assert isinstance(value, schema) and not (schema is int and isinstance(value, bool)), (
            f"{where}: expected {schema.__name__}, got {value!r}"
        )


def of_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.fixture(scope="module", params=PROFILES)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Doc]]:
    return request.param, render_overlay(request.param)


def kustomize_command() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@pytest.mark.parametrize("profile", PROFILES)
def test_rendering_matches_kustomize_where_installed(profile: str) -> None:
    command = kustomize_command()
    if command is None:
        pytest.skip("neither kustomize nor kubectl is installed: the Python rendering stands alone")
    out = subprocess.run(
        [*command, str(REPO / "k8s" / "overlays" / profile)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr

    def canonical(docs: list[Doc]) -> list[str]:
        return sorted(json.dumps(d, sort_keys=True) for d in docs)

    assert canonical([d for d in yaml.safe_load_all(out.stdout) if d]) == canonical(render_overlay(profile))


def test_kubernetes_objects_validate_against_the_openapi_schemas(overlay: tuple[str, list[Doc]]) -> None:
    profile, docs = overlay
    checked = 0
    for doc in docs:
        if doc["apiVersion"].startswith("dapr.io/"):
            continue
        for version in K8S_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(
                    f"{profile}: {doc['kind']}/{doc['metadata']['name']} (Kubernetes {version}): {exc}"
                )
        checked += 1
    assert checked > 20


def test_dapr_resources_have_only_documented_fields(overlay: tuple[str, list[Doc]]) -> None:
    profile, docs = overlay
    for doc in docs:
        if not doc["apiVersion"].startswith("dapr.io/"):
            continue
        schema = DAPR_SCHEMAS.get((doc["apiVersion"], doc["kind"]))
        assert schema, f"{profile}: {doc['apiVersion']} {doc['kind']} is not a Dapr resource these files use"
        check_shape(doc, schema, f"{profile}: {doc['kind']}/{doc['metadata']['name']}")
        for entry in doc.get("spec", {}).get("metadata", []) if doc["kind"] == "Component" else []:
            assert ("value" in entry) != ("secretKeyRef" in entry), f"{doc['metadata']['name']}: {entry}"


def app_ports() -> dict[str, int]:
    return {a["appID"]: a["appPort"] for a in yaml.safe_load((REPO / "dapr.yaml").read_text())["apps"]}


def test_every_app_is_deployed_with_its_sidecar(overlay: tuple[str, list[Doc]]) -> None:
    profile, docs = overlay
    deployments = of_kind(docs, "Deployment")
    assert set(deployments) == set(names.ALL_APP_IDS)
    (config,) = of_kind(docs, "Configuration")
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for app_id, deployment in deployments.items():
        where = f"{profile}: {app_id}"
        template = deployment["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        assert set(annotations) <= DAPR_ANNOTATIONS, f"{where}: {set(annotations) - DAPR_ANNOTATIONS}"
        port = str(app_ports()[app_id])
        assert annotations["dapr.io/enabled"] == "true"
        assert annotations["dapr.io/app-id"] == app_id
        assert annotations["dapr.io/app-port"] == port
        assert annotations["dapr.io/app-protocol"] == "http"
        assert annotations["dapr.io/config"] == config
        assert annotations["dapr.io/enable-metrics"] == "true"
        # Each app its own pair of tokens (a shared one would let any app pass for another).
        assert annotations["dapr.io/api-token-secret"] == f"vigil-{app_id}-dapr-api-token"
        assert annotations["dapr.io/app-token-secret"] == f"vigil-{app_id}-app-api-token"
        for resource in ("cpu", "memory"):
            for bound in ("request", "limit"):
                assert annotations[f"dapr.io/sidecar-{resource}-{bound}"], (
                    f"{where}: sidecar {resource} {bound}"
                )
        (container,) = pod_containers(deployment)
        assert container["image"] == f"vigil:{version}"
        assert container["command"] == ["python", "-m", f"apps.{app_id}"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["APP_PORT"] == port and env["VIGIL_HOST"] == "0.0.0.0", where
        (http,) = container["ports"]
        assert http["name"] == "http" and str(http["containerPort"]) == port
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"]["port"] == "http", f"{where}: {probe}"
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        for bound in ("requests", "limits"):
            assert set(container["resources"][bound]) == {"cpu", "memory"}, f"{where}: {bound}"
        pod_security = template["spec"]["securityContext"]
        security = container["securityContext"]
        assert pod_security["runAsNonRoot"] is True and security["runAsUser"] > 0, where
        assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True
        assert security["capabilities"]["drop"] == ["ALL"]
        assert pod_security["seccompProfile"]["type"] == "RuntimeDefault"


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_every_app_has_a_service_and_a_disruption_budget(overlay: tuple[str, list[Doc]]) -> None:
    profile, docs = overlay
    services, budgets = of_kind(docs, "Service"), of_kind(docs, "PodDisruptionBudget")
    for app_id, deployment in of_kind(docs, "Deployment").items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        service = services[app_id]
        public = app_id == names.GATEWAY_APP_ID  # the single public entry
        assert service["spec"]["type"] == ("LoadBalancer" if public else "ClusterIP"), f"{profile}: {app_id}"
        assert selects(service["spec"]["selector"], labels)
        assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
        budget = budgets[app_id]["spec"]
        assert selects(budget["selector"]["matchLabels"], labels)
        assert budget == {"maxUnavailable": 1, "selector": budget["selector"]}, "drains never block"


def test_autoscalers_where_the_broker_allows_them(overlay: tuple[str, list[Doc]]) -> None:
    profile, docs = overlay
    hpas, deployments = of_kind(docs, "HorizontalPodAutoscaler"), of_kind(docs, "Deployment")
    if profile == "mqtt":
        # One MQTT session per app id: a second replica would take over the first one's connection.
        assert not hpas
        assert all(d["spec"].get("replicas", 1) == 1 for d in deployments.values())
        return
    assert set(hpas) == {names.EQUIPMENT_APP_ID, names.INFERENCE_APP_ID}
    for name, hpa in hpas.items():
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["kind"], target["name"]) == ("Deployment", name)
        assert "replicas" not in deployments[name]["spec"], f"{name}: the autoscaler owns its replicas"
        assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]


def test_secrets_are_referenced_never_inlined(overlay: tuple[str, list[Doc]]) -> None:
    profile, docs = overlay
    assert not of_kind(docs, "Secret"), "Secrets are created out of band (README, Deploy)"
    referenced: set[str] = set()
    for name, component in of_kind(docs, "Component").items():
        for entry in component["spec"]["metadata"]:
            if SECRET_METADATA.search(entry["name"]):
                assert "secretKeyRef" in entry, f"{profile}: {name}.{entry['name']} must be a secretKeyRef"
            if "secretKeyRef" in entry:
                assert component["auth"]["secretStore"] == "kubernetes"
                referenced.add(entry["secretKeyRef"]["name"])
    for deployment in of_kind(docs, "Deployment").values():
        for env in pod_containers(deployment)[0]["env"]:
            assert not SECRET_METADATA.search(env["name"]), f"{profile}: env {env['name']} inlines a secret"
    readme = (REPO / "README.md").read_text()
    for secret in referenced:
        assert f"`{secret}`" in readme, f"README's Deploy section must say how to create the Secret {secret}"


def test_components_mirror_the_local_profile(overlay: tuple[str, list[Doc]]) -> None:
    """Swapping a component is one file: the same names and scopes as the profile's local folder,
    the same type (but for the cluster's secret store and archive) and every local setting."""
    profile, docs = overlay
    components = of_kind(docs, "Component")
    assert set(components) == COMPONENT_NAMES
    local = {
        d["metadata"]["name"]: d
        for f in sorted(OVERLAYS[profile].glob("*.yaml"))
        for d in documents(f)
        if d["kind"] == "Component"
    }
    for name, component in components.items():
        assert component.get("scopes") == local[name].get("scopes"), f"{profile}: {name} scopes"
        if name in CLUSTER_ONLY:
            continue
        assert component["spec"]["type"] == local[name]["spec"]["type"], f"{profile}: {name} type"
        settings = {e["name"] for e in component["spec"]["metadata"]}
        missing = {e["name"] for e in local[name]["spec"]["metadata"]} - settings
        assert not missing, f"{profile}: {name} lacks the local profile's {missing}"


def test_configuration_and_resiliency_agree_with_dapr_config(overlay: tuple[str, list[Doc]]) -> None:
    _, docs = overlay
    (local_config,) = documents(REPO / "dapr-config" / "config.yaml")
    (config,) = of_kind(docs, "Configuration").values()
    assert config["metadata"]["name"] == local_config["metadata"]["name"]
    assert config["spec"].get("features") == local_config["spec"].get("features")
    (local_resiliency,) = documents(REPO / "dapr-config" / "resiliency.yaml")
    (resiliency,) = of_kind(docs, "Resiliency").values()
    assert resiliency["spec"] == local_resiliency["spec"]
    targets = resiliency["spec"]["targets"]
    assert set(targets.get("apps", {})) <= set(names.ALL_APP_IDS)
    assert set(targets.get("actors", {})) <= {names.EQUIPMENT_ACTOR_TYPE}
    assert set(targets.get("components", {})) <= COMPONENT_NAMES


# Run in a fresh interpreter: importing an app module here would run its module-level set-up a second
# time in a process where other tests already started that app's framework (NiceGUI refuses that).
_DECLARED = """
import importlib, json, sys
from fastapi.testclient import TestClient
found = []
for app_id in sys.argv[1:]:
    client = TestClient(importlib.import_module(f"apps.{app_id}.app").app)  # no lifespan: no sidecar
    answer = client.get("/dapr/subscribe")
    for s in answer.json() if answer.status_code != 404 else []:
        bulk = json.dumps(s.get("bulkSubscribe"), sort_keys=True)
        found.append([app_id, s["pubsubname"], s["topic"], s["route"], s.get("deadLetterTopic"), bulk])
print(json.dumps(found))
"""


def declared_subscriptions() -> set[tuple[str, str, str, str, str | None, str]]:
    """What each app answers on GET /dapr/subscribe (its programmatic subscriptions)."""
    done = subprocess.run(
        [sys.executable, "-c", _DECLARED, *names.ALL_APP_IDS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return {tuple(row) for row in json.loads(done.stdout.strip().splitlines()[-1])}  # type: ignore[misc]


def test_subscriptions_are_the_ones_the_apps_declare() -> None:
    docs = render_overlay(PROFILES[0])
    declared = set()
    for sub in of_kind(docs, "Subscription").values():
        spec = sub["spec"]
        (app_id,) = sub["scopes"]
        declared.add(
            (
                app_id,
                spec["pubsubname"],
                spec["topic"],
                spec["routes"]["default"],
                spec.get("deadLetterTopic"),
                json.dumps(spec.get("bulkSubscribe"), sort_keys=True),  # the same batching both ways
            )
        )
    assert declared == declared_subscriptions()
    topics = {t for _, _, t, _, _, _ in declared}
    assert topics <= {v for k, v in vars(names).items() if k.startswith("TOPIC_")}
