"""dapr.yaml is a plain Dapr multi-app run template that real `dapr run -f .` runs as `vigil up` does.

The fields and their types are those of the Dapr CLI's run file (`RunFileConfig`: `common` takes the
shared run settings, each app those plus its own), as the multi-app template docs list them. Paths are
checked with the CLI's rules (appDirPath and `common` paths relative to the template's folder, an app's
own paths relative to its appDirPath) and daprd's: daprd and the app start in appDirPath, daprd loads
the *.yaml files of each resources folder (not recursively), and a relative path in a component's
metadata is relative to daprd's working directory. localdapr (`vigil up`, run from the repository root)
must resolve every such path to the same place.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from apps.common import names
from localdapr.bindings.localstorage import LocalStorageBinding
from localdapr.components.spec import ComponentSpec, load_resources
from localdapr.launch.runfile import load_run_template
from localdapr.secrets.local import LocalFileSecretStore

REPO = Path(__file__).resolve().parents[3]
TEMPLATE = REPO / "dapr.yaml"

# The run settings `common` and an app may both set (the CLI's SharedRunConfig), with their YAML types.
SHARED_FIELDS: dict[str, type | tuple[type, ...]] = {
    "configFilePath": str,
    "appProtocol": str,
    "apiListenAddresses": str,
    "enableProfiling": bool,
    "logLevel": str,
    "appMaxConcurrency": int,
    "placementHostAddress": str,
    "resourcesPath": str,  # deprecated singular form
    "resourcesPaths": list,
    "appSSL": bool,
    "maxBodySize": str,
    "readBufferSize": str,
    "enableAppHealthCheck": bool,
    "appHealthCheckPath": str,
    "appHealthProbeInterval": int,
    "appHealthProbeTimeout": int,
    "appHealthThreshold": int,
    "enableApiLogging": bool,
    "runtimePath": str,
    "env": dict,
    "daprdLogDestination": str,
    "appLogDestination": str,
    "schedulerHostAddress": str,
}
# Settings only an app takes (the CLI's RunConfig and ContainerConfiguration, plus appDirPath).
APP_FIELDS: dict[str, type | tuple[type, ...]] = {
    **SHARED_FIELDS,
    "appID": str,
    "appDirPath": str,
    "appChannelAddress": str,
    "appPort": int,
    "daprHTTPPort": int,
    "daprGRPCPort": int,
    "daprInternalGRPCPort": int,
    "metricsPort": int,
    "profilePort": int,
    "unixDomainSocket": str,
    "command": list,
    "containerImage": str,
    "containerImagePullPolicy": str,
    "createService": bool,
}
LOG_DESTINATIONS = {"console", "file", "fileAndConsole"}
APP_PROTOCOLS = {"http", "grpc", "https", "grpcs", "h2c"}
# What Kubernetes (and so `dapr run -k`) accepts as an app id: a DNS label.
APP_ID = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# Component metadata that names a file or folder, per component type.
PATH_FIELDS = {
    "secretstores.local.file": "secretsFile",
    "bindings.localstorage": "rootPath",
    "state.sqlite": "connectionString",
}
PROFILES = [REPO / "components", *sorted(p for p in (REPO / "components").iterdir() if p.is_dir())]


def template() -> dict[str, Any]:
    doc = yaml.safe_load(TEMPLATE.read_text())
    assert isinstance(doc, dict)
    return doc


def check_fields(section: dict[str, Any], allowed: dict[str, type | tuple[type, ...]], where: str) -> None:
    for key, value in section.items():
        assert key in allowed, f"{where}: {key!r} is not a field of Dapr's multi-app run template"
        kind = allowed[key]
        # bool is an int in Python; the CLI's YAML decoder keeps them apart.
        assert isinstance(value, kind) and not (kind is int and isinstance(value, bool)), (
            f"{where}: {key} must be {kind}, got {value!r}"
        )
    for key in ("resourcesPaths", "command"):
        if key in section:
            assert section[key] and all(isinstance(v, str) for v in section[key]), f"{where}: {key}"
    # The CLI reads env as map[string]string: an unquoted number or boolean does not decode.
    for name, value in (section.get("env") or {}).items():
        assert isinstance(name, str) and isinstance(value, str), f"{where}: env {name}: quote {value!r}"
    for key in ("daprdLogDestination", "appLogDestination"):
        if key in section:
            assert section[key] in LOG_DESTINATIONS, f"{where}: {key}"
    if "appProtocol" in section:
        assert section["appProtocol"].lower() in APP_PROTOCOLS, f"{where}: appProtocol"


def test_template_has_only_documented_fields_and_types() -> None:
    doc = template()
    assert set(doc) <= {"version", "name", "common", "apps"}
    assert doc["version"] == 1 and type(doc["version"]) is int
    assert isinstance(doc.get("name", ""), str)
    check_fields(doc.get("common") or {}, SHARED_FIELDS, "common")
    assert isinstance(doc["apps"], list) and doc["apps"]
    for i, app in enumerate(doc["apps"]):
        check_fields(app, APP_FIELDS, f"apps[{i}]")
        assert "appDirPath" in app, f"apps[{i}]: appDirPath is required"
        assert APP_ID.match(app["appID"]), f"apps[{i}]: {app['appID']!r} is not a valid app id"
        assert 0 < app["appPort"] < 65536


def test_app_ids_and_ports_are_unique_and_known() -> None:
    apps = template()["apps"]
    assert sorted(a["appID"] for a in apps) == sorted(names.ALL_APP_IDS)
    ports = [a["appPort"] for a in apps]
    assert len(set(ports)) == len(ports)


def app_dirs() -> dict[str, Path]:
    """Each app's appDirPath as the CLI resolves it: relative to the template's folder."""
    return {a["appID"]: (TEMPLATE.parent / a["appDirPath"]).resolve() for a in template()["apps"]}


def test_paths_exist_as_the_cli_resolves_them() -> None:
    doc = template()
    common = doc.get("common") or {}
    for path in [*common.get("resourcesPaths", []), common.get("configFilePath")]:
        if path:
            assert (TEMPLATE.parent / path).exists(), f"common: {path} does not exist"
    for app in doc["apps"]:
        app_dir = app_dirs()[app["appID"]]
        assert app_dir.is_dir()
        for path in [*app.get("resourcesPaths", []), app.get("configFilePath")]:
            if path:  # an app's own paths are relative to its appDirPath
                assert (app_dir / path).exists(), f"{app['appID']}: {path} does not exist"
        # A .dapr/resources folder in appDirPath would silently win over common's resourcesPaths.
        assert not (app_dir / ".dapr" / "resources").exists()


def test_commands_run_from_app_dir_with_the_python_on_path() -> None:
    """`dapr run` starts the command in appDirPath with the PATH it was given: the command must not
    depend on `vigil up` replacing `python` (an activated venv provides it) nor on an installed package."""
    for app in template()["apps"]:
        command = app["command"]
        assert command[:2] == ["python", "-m"], f"{app['appID']}: {command}"
        assert command[2] == f"apps.{app['appID']}"
        package = app_dirs()[app["appID"]] / Path(*command[2].split("."))
        assert (package / "__main__.py").is_file(), f"{app['appID']}: {command[2]} is not under appDirPath"
    assert shutil.which("python") or shutil.which("python3")


def test_localdapr_reads_the_template_as_the_cli_does() -> None:
    loaded = {spec.app_id: spec for spec in load_run_template(TEMPLATE).apps}
    common = template()["common"]
    for app_id, app_dir in app_dirs().items():
        spec = loaded[app_id]
        assert spec.app_dir == app_dir
        assert spec.resources_paths == [(TEMPLATE.parent / p).resolve() for p in common["resourcesPaths"]]
        assert spec.config_file == (TEMPLATE.parent / common["configFilePath"]).resolve()


def daprd_components(resources: list[Path], app_id: str) -> list[dict[str, Any]]:
    """The Component documents daprd of `app_id` loads: *.yaml/*.yml files of each folder, not
    recursively, scoped to the app; a name defined twice stops daprd."""
    found: list[dict[str, Any]] = []
    for folder in resources:
        for file in sorted(folder.iterdir()):
            if file.is_file() and file.suffix in (".yaml", ".yml"):
                docs = yaml.safe_load_all(file.read_text())
                found += [d for d in docs if d and d.get("kind") == "Component"]
    seen = [d["metadata"]["name"] for d in found]
    assert len(seen) == len(set(seen)), f"{resources}: duplicate component names {seen}"
    return [d for d in found if not d.get("scopes") or app_id in d["scopes"]]


def path_value(component: dict[str, Any]) -> str | None:
    field = PATH_FIELDS.get(component["spec"]["type"])
    for entry in component["spec"].get("metadata") or []:
        if entry["name"] == field:
            return str(entry["value"])  # a path is never a secret: it must be a plain value
    return None


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_component_paths_resolve_under_daprd_to_one_place(profile: Path) -> None:
    """Under daprd a relative secretsFile, rootPath or SQLite file is relative to appDirPath: it must
    exist (the secrets file) and be the same file or folder for every app that loads the component,
    or the apps would not share the archive and the state."""
    # A profile replaces the first resources path and keeps the others, as `vigil up --profile` does.
    config_dirs = [TEMPLATE.parent / p for p in template()["common"]["resourcesPaths"][1:]]
    resolved: dict[str, set[Path]] = {}
    for app_id, app_dir in app_dirs().items():
        for component in daprd_components([profile, *config_dirs], app_id):
            raw = path_value(component)
            if raw is None or raw == ":memory:":
                continue
            path = Path(raw.removeprefix("file:").split("?")[0])
            resolved.setdefault(component["metadata"]["name"], set()).add(
                path if path.is_absolute() else (app_dir / path).resolve()
            )
            if component["spec"]["type"] == "secretstores.local.file":
                assert (app_dir / path).is_file(), f"{app_id}: secretsFile {raw} is not under {app_dir}"
    for name, places in resolved.items():
        assert len(places) == 1, f"{profile.name}/{name}: apps resolve it to {sorted(places)}"


def spec_with_values(spec: ComponentSpec) -> ComponentSpec:
    spec.metadata = {e.name: e.value for e in spec.entries if e.value is not None}
    return spec


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_localdapr_resolves_the_same_paths_as_daprd(profile: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`vigil up` hosts every sidecar in its own process, run from the repository root: the files and
    folders it opens are those daprd opens from each app's appDirPath."""
    monkeypatch.chdir(TEMPLATE.parent)
    for component in load_resources([profile]).components:
        spec = spec_with_values(component)
        raw = spec.metadata.get(PATH_FIELDS.get(spec.type, ""))
        if raw is None or spec.type == "state.sqlite":
            continue  # SQLite opens connectionString as given, relative to the same working directory
        for app_id, app_dir in app_dirs().items():
            if not spec.applies_to(app_id):
                continue
            daprd = (app_dir / raw).resolve()
            if spec.type == "secretstores.local.file":
                assert LocalFileSecretStore.from_spec(spec).path.resolve() == daprd
            else:
                assert LocalStorageBinding.from_spec(spec).root == daprd
