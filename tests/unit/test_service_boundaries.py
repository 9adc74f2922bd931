"""Each service under `apps/` stands alone: it reaches other services, stores and brokers only through
Dapr. So no service module imports localdapr, the `vigil` client package, another service, or a
broker/database client; `apps/common` imports no service at all. Read from the source with `ast`, so
an import hidden inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

APPS = Path(__file__).resolve().parents[2] / "apps"
SERVICES = sorted(p.name for p in APPS.iterdir() if (p / "app.py").is_file())
# Brokers and databases are Dapr components: the apps speak to them only through the Dapr SDK.
CLIENT_LIBRARIES = ("redis", "psycopg", "psycopg2", "asyncpg", "aio_pika", "pika", "paho", "nats", "sqlite3")


def imported_modules(path: Path) -> list[str]:
    modules: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.append(node.module)
            # `from apps import alerting` names a service too
            modules.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return modules


def forbidden_for(owner: str | None, module: str) -> str | None:
    """Why `owner` (a service name, or None for apps/common) may not import `module`; None if it may."""
    top = module.split(".")[0]
    if top in ("localdapr", "vigil"):
        return f"{top} is not part of any service"
    if top in CLIENT_LIBRARIES:
        return f"{top} is a broker/database client: use Dapr"
    parts = module.split(".")
    if top == "apps" and len(parts) > 1 and parts[1] in SERVICES and parts[1] != owner:
        return f"apps.{parts[1]} is another service"
    return None


def test_the_services_are_found() -> None:
    assert {"alerting", "equipment", "ingestion", "inference", "training", "gateway", "dashboard"} <= set(
        SERVICES
    )


@pytest.mark.parametrize("owner", [*SERVICES, "common"])
def test_a_service_imports_only_itself_common_and_the_dapr_sdk(owner: str) -> None:
    folder = APPS / owner
    violations = [
        f"{path.relative_to(APPS.parent)} imports {module}: {why}"
        for path in sorted(folder.rglob("*.py"))
        for module in imported_modules(path)
        if (why := forbidden_for(None if owner == "common" else owner, module))
    ]
    assert violations == []


def test_the_rule_catches_what_it_forbids() -> None:
    assert forbidden_for("ingestion", "localdapr.sidecar")
    assert forbidden_for("ingestion", "apps.equipment.domain")
    assert forbidden_for(None, "apps.alerting")
    assert forbidden_for("gateway", "redis.asyncio")
    assert forbidden_for("ingestion", "apps.ingestion.validation") is None
    assert forbidden_for("ingestion", "apps.common.contracts") is None


def test_no_loose_modules_in_apps() -> None:
    """`apps/` holds the services and their shared contracts only; the CLI and client tools are `vigil/`."""
    loose = sorted(p.name for p in APPS.glob("*.py") if p.name != "__init__.py")
    folders = sorted(p.name for p in APPS.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert loose == []
    assert sorted(set(folders) - set(SERVICES)) == ["common"]
