"""The multi-app run template `dapr run -f` reads (dapr.yaml), with the CLI's path rules (contract 6.3).

The app channel settings are read as `dapr run` reads them, from an app or from `common`:
`appProtocol` (http, or grpc for an app serving AppCallback) and the app health checks
(`enableAppHealthCheck`, `appHealthCheckPath`, `appHealthProbeInterval` in seconds,
`appHealthProbeTimeout` in milliseconds, `appHealthThreshold`).

localdapr extension: `replicas: N` on an app starts N instances (each with its own app port, given in
APP_PORT; the command must read it) for actor placement across instances.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from localdapr.appchannel import APP_PROTOCOLS
from localdapr.apphealth import AppHealthConfig
from localdapr.components.spec import default_resources_path
from localdapr.errors import ComponentError


@dataclass(slots=True)
class AppSpec:
    app_id: str
    app_dir: Path
    command: list[str]
    app_port: int | None
    env: dict[str, str] = field(default_factory=dict)
    app_protocol: str = "http"
    app_health: AppHealthConfig | None = None  # None: no app health checks
    resources_paths: list[Path] = field(default_factory=list)
    config_file: Path | None = None
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0  # daprd's --metrics-port; 0: a free port
    replicas: int = 1
    default_resources: bool = False  # no resources path anywhere: the CLI's default folder is used


@dataclass(slots=True)
class RunTemplate:
    file: Path
    name: str
    apps: list[AppSpec]


def _paths(section: dict[str, Any]) -> list[str]:
    out = list(section.get("resourcesPaths") or [])
    if section.get("resourcesPath"):
        out.append(section["resourcesPath"])  # deprecated singular form, appended as the CLI does
    return [str(p) for p in out]


def _app_health(setting: dict[str, Any], where: str) -> AppHealthConfig | None:
    if not setting.get("enableAppHealthCheck"):
        return None
    defaults = AppHealthConfig()
    try:
        return AppHealthConfig(
            check_path=str(setting.get("appHealthCheckPath") or defaults.check_path),
            probe_interval=int(setting.get("appHealthProbeInterval") or defaults.probe_interval),
            probe_timeout=int(setting.get("appHealthProbeTimeout") or defaults.probe_timeout * 1000) / 1000,
            threshold=int(setting.get("appHealthThreshold") or defaults.threshold),
        )
    except (TypeError, ValueError) as exc:
        raise ComponentError(f"{where}: app health check settings must be whole numbers: {exc}") from exc


def load_run_template(file: Path) -> RunTemplate:
    if not file.is_file():
        raise ComponentError(f"{file}: run template not found")
    try:
        doc = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ComponentError(f"{file}: not valid YAML: {exc}") from exc
    if doc.get("version") != 1:
        raise ComponentError(f"{file}: field 'version' must be 1")
    base = file.parent.resolve()
    common = doc.get("common") or {}
    common_env = {str(k): str(v) for k, v in (common.get("env") or {}).items()}
    apps: list[AppSpec] = []
    raw_apps = doc.get("apps")
    if not isinstance(raw_apps, list) or not raw_apps:
        raise ComponentError(f"{file}: field 'apps' must be a non-empty list")
    for i, raw in enumerate(raw_apps):
        where = f"{file}: apps[{i}]"
        if not raw.get("appDirPath"):
            raise ComponentError(f"{where}: field 'appDirPath' is required")
        app_dir = (base / str(raw["appDirPath"])).resolve()
        if not app_dir.is_dir():
            raise ComponentError(f"{where}: appDirPath {app_dir} does not exist")
        app_id = str(raw.get("appID") or app_dir.name)
        command = raw.get("command") or []
        if isinstance(command, str):
            command = shlex.split(command)
        if not command:
            raise ComponentError(f"{where} ({app_id}): field 'command' is required")
        # Resources: app resourcesPaths (relative to appDirPath) -> <appDir>/.dapr/resources -> common
        # -> the CLI's default (~/.dapr/components).
        res = [(app_dir / p).resolve() for p in _paths(raw)]
        if not res and (app_dir / ".dapr" / "resources").is_dir():
            res = [app_dir / ".dapr" / "resources"]
        if not res:
            res = [(base / p).resolve() for p in _paths(common)]
        default_resources = not res
        if default_resources:
            res = [default_resources_path()]
        config = raw.get("configFilePath")
        config_path = (app_dir / config).resolve() if config else None
        if config_path is None and (app_dir / ".dapr" / "config.yaml").is_file():
            config_path = app_dir / ".dapr" / "config.yaml"
        if config_path is None and common.get("configFilePath"):
            config_path = (base / str(common["configFilePath"])).resolve()
        # The default folder is checked when a sidecar loads it: `vigil up --resources` replaces it.
        for p in [*([] if default_resources else res), *([config_path] if config_path else [])]:
            if not p.exists():
                raise ComponentError(f"{where} ({app_id}): path {p} does not exist")
        # Like `dapr run`, an app's own setting wins over the one in `common`.
        setting = {**common, **raw}
        app_protocol = str(setting.get("appProtocol") or "http").lower()
        if app_protocol not in APP_PROTOCOLS:
            raise ComponentError(
                f"{where} ({app_id}): appProtocol {app_protocol!r} is not supported by localdapr "
                f"(use one of: {', '.join(APP_PROTOCOLS)})"
            )
        replicas = int(raw.get("replicas", 1))
        if replicas < 1:
            raise ComponentError(f"{where} ({app_id}): field 'replicas' must be >= 1")
        apps.append(
            AppSpec(
                app_id=app_id,
                app_dir=app_dir,
                command=[str(c) for c in command],
                app_port=int(raw["appPort"]) if raw.get("appPort") else None,
                env={**common_env, **{str(k): str(v) for k, v in (raw.get("env") or {}).items()}},
                app_protocol=app_protocol,
                app_health=_app_health(setting, f"{where} ({app_id})"),
                resources_paths=res,
                config_file=config_path,
                http_port=int(raw.get("daprHTTPPort") or 0),
                grpc_port=int(raw.get("daprGRPCPort") or 0),
                metrics_port=int(raw.get("metricsPort") or 0),
                replicas=replicas,
                default_resources=default_resources,
            )
        )
    ids = [a.app_id for a in apps]
    dupes = {x for x in ids if ids.count(x) > 1}
    if dupes:
        raise ComponentError(f"{file}: duplicate appID(s): {', '.join(sorted(dupes))}")
    return RunTemplate(file=file, name=str(doc.get("name") or base.name), apps=apps)
