"""The pipeline end to end on the PostgreSQL + RabbitMQ profile, with no change to the apps.

The resources folder is `components/postgres-rabbitmq/` as shipped: statestore, modelstore and pubsub
files copied unchanged. Only the secret store points elsewhere, at a secrets file whose connection
strings name a database and a RabbitMQ virtual host made for this run (and dropped afterwards), so runs
never share tables, exchanges or queues. The test is test_pipeline's replay of FD001 units to their
failure (warning, then critical, alerts in alerting), collected here with this module's `platform`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import skip_or_fail
from tests.e2e.platform import REPO, Platform, running_platform

# Imported so pytest runs it here too, on this module's `platform` (the profile below).
from tests.e2e.test_pipeline import (  # noqa: F401
    actor_env,
    test_replay_raises_warning_then_critical_before_failure,
)

pytestmark = pytest.mark.e2e

PROFILE = REPO / "components" / "postgres-rabbitmq"


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def vhost(rabbitmq_url: str) -> Iterator[str]:
    """A RabbitMQ virtual host for this run: exchanges and queues named as in production, isolated."""
    if shutil.which("rabbitmqctl") is None:
        skip_or_fail("rabbitmqctl is not installed: the profile test needs a virtual host of its own")
    name = f"vigil-e2e-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield rabbitmq_url.rstrip("/") + "/" + name
    finally:
        rabbitmqctl("delete_vhost", name)


@pytest.fixture(scope="module")
def database(postgres_dsn: str) -> Iterator[str]:
    """A PostgreSQL database for this run; the profile's tables are created in it by the sidecars."""
    name = f"vigil_e2e_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{postgres_dsn} dbname={name}"
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def profile_copy(folder: Path, database: str, vhost: str) -> Path:
    folder.mkdir(parents=True)
    for file in PROFILE.glob("*.yaml"):
        shutil.copy(file, folder / file.name)
    secrets = json.loads((REPO / "components" / "secrets.json").read_text())
    secrets["postgres"]["connection-string"] = database
    secrets["rabbitmq"]["connection-string"] = vhost
    (folder / "secrets.json").write_text(json.dumps(secrets))
    store = folder / "secretstore.yaml"
    store.write_text(store.read_text().replace("components/secrets.json", str(folder / "secrets.json")))
    return folder


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory, database: str, vhost: str) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("e2e-postgres-rabbitmq")
    components = profile_copy(tmp / "components", database, vhost)
    env = {"VIGIL_TRAINING_N_ESTIMATORS": "120", "VIGIL_EQUIPMENT_HEALTH_PUBLISH_SECONDS": "0"}
    with running_platform(components, tmp, env) as p:
        yield p
