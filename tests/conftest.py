"""Shared fixtures: the real servers on loopback, skipped with a reason when unreachable.

`VIGIL_REQUIRE_SERVICES=1` (set by `.ci/run`) turns every such skip into a failure, so CI cannot go
green by skipping the tests that need Redis.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from localdapr.secretsfile import ensure_secrets_file

REDIS_ADDRESS = os.environ.get("VIGIL_TEST_REDIS", "127.0.0.1:6379")
# PostgreSQL (trust auth), RabbitMQ (guest/guest) and Mosquitto, as this machine runs them.
POSTGRES_DSN = os.environ.get("VIGIL_TEST_POSTGRES", "host=127.0.0.1 port=5432 user=postgres dbname=test")
RABBITMQ_URL = os.environ.get("VIGIL_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672/")
MQTT_URL = os.environ.get("VIGIL_TEST_MQTT", "tcp://127.0.0.1:1883")


def pytest_sessionstart(session: pytest.Session) -> None:
    """components/secrets.json is not committed: a fresh clone's test run makes it from its template
    (tests start sidecars on the shipped component folders, which read it). Atomic and never replacing,
    so the controller and every xdist worker can all call it."""
    ensure_secrets_file(Path(__file__).resolve().parents[1] / "components" / "secrets.json")


def pytest_configure(config: pytest.Config) -> None:
    """Keep the collection order below when pytest-xdist hands out files (its default sorts them by
    their number of tests, which puts the end-to-end modules, the longest ones, last)."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


# Longest first: with `--dist loadfile` the workers take files in collection order, so the whole
# platforms (minutes each) start at once and the short unit files fill the gaps at the end, rather than
# one worker starting a long e2e module when the others are nearly done.
TIERS = {"e2e": 0, "integration": 1}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests = Path(__file__).resolve().parent

    def tier(item: pytest.Item) -> int:
        try:
            return TIERS.get(item.path.relative_to(tests).parts[0], len(TIERS))
        except ValueError:
            return len(TIERS)

    items.sort(key=tier)  # stable: the order within a tier is pytest's


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder for models fitted once and read by every e2e platform of this run that fits the same one
    (tests/e2e/cached_training.py): under the run's base temp, which xdist workers share as the parent
    of their own, so a later run never reads it."""
    base = tmp_path_factory.getbasetemp()
    folder = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "model-cache"
    os.environ["VIGIL_TEST_MODEL_CACHE"] = str(folder)
    return folder


def services_required() -> bool:
    return os.environ.get("VIGIL_REQUIRE_SERVICES", "").strip().lower() in ("1", "true", "yes")


def skip_or_fail(reason: str) -> None:
    """Skip with `reason`, or fail with it when CI demands the real servers."""
    if services_required():
        pytest.fail(f"{reason} (VIGIL_REQUIRE_SERVICES is set, so this is a failure, not a skip)")
    pytest.skip(reason)


def reachable(address: str, timeout: float = 1.0) -> str | None:
    """None when something listens at host:port, else why not."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis as `host:port` (what a component's redisHost takes)."""
    problem = reachable(REDIS_ADDRESS)
    if problem is not None:
        skip_or_fail(f"Redis is not reachable at {REDIS_ADDRESS}: {problem}")
    return REDIS_ADDRESS


def _server_fixture(what: str, address: str, value: str) -> str:
    problem = reachable(address)
    if problem is not None:
        skip_or_fail(f"{what} is not reachable at {address}: {problem}")
    return value


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """The real PostgreSQL as a libpq connection string (what state.postgresql's connectionString takes)."""
    params = dict(part.split("=", 1) for part in POSTGRES_DSN.split())
    return _server_fixture(
        "PostgreSQL", f"{params.get('host', '127.0.0.1')}:{params.get('port', '5432')}", POSTGRES_DSN
    )


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    """The real RabbitMQ as an amqp:// URL (pubsub.rabbitmq's connectionString)."""
    address = RABBITMQ_URL.split("@", 1)[-1].split("/", 1)[0]
    return _server_fixture("RabbitMQ", address, RABBITMQ_URL)


@pytest.fixture(scope="session")
def mqtt_url() -> str:
    """The real MQTT broker as tcp://host:port (pubsub.mqtt3's url)."""
    return _server_fixture("the MQTT broker", MQTT_URL.split("://", 1)[-1], MQTT_URL)
