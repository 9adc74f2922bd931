"""The ready component profiles: every file loads the way a sidecar reads it (types and versions
localdapr implements, secretKeyRefs that resolve in components/secrets.json, metadata each component
accepts), credentials come from the secret store, and the profile names resolve. No server needed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from localdapr.components.factory import component_class
from localdapr.doctor import profile_names, profile_path, resolve, servers
from localdapr.errors import ComponentError

REPO = Path(__file__).resolve().parents[3]
PROFILES = {
    "redis": {("Redis", "localhost:6379")},
    "embedded": set(),
    "postgres-rabbitmq": {("PostgreSQL", "localhost:5432/postgres"), ("RabbitMQ", "localhost:5672/")},
    "mqtt": {("Redis", "localhost:6379"), ("MQTT", "localhost:1883")},
}


def test_every_profile_is_listed() -> None:
    assert set(PROFILES) <= set(profile_names(REPO))
    assert profile_path(REPO, "redis") == REPO / "components"
    assert profile_path(REPO, "mqtt") == REPO / "components" / "mqtt"
    with pytest.raises(ComponentError, match="no profile 'nope'.*postgres-rabbitmq"):
        profile_path(REPO, "nope")
    with pytest.raises(ComponentError):
        profile_path(REPO, "../apps")


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profile_components_build_and_name_their_servers(name: str) -> None:
    specs = resolve(profile_path(REPO, name))
    for spec in specs:
        component_class(spec).from_spec(spec)  # type, version and metadata as the sidecar checks them
    assert {(s.kind, s.address) for s in servers(specs)} == PROFILES[name]


@pytest.mark.parametrize("name", ["postgres-rabbitmq", "mqtt"])
def test_connection_details_come_from_the_secret_store(name: str) -> None:
    """No literal connection string or URL in the files: they are secretKeyRefs, as in a cluster."""
    for spec in resolve(profile_path(REPO, name)):
        for entry in spec.entries:
            if entry.name in ("connectionString", "url", "password", "redisPassword"):
                assert entry.secret_ref is not None, f"{spec.file}: {entry.name} is not a secretKeyRef"
                assert spec.secret_store == "secretstore"


def test_postgres_profile_keeps_actor_state_and_models_apart() -> None:
    specs = {s.name: s for s in resolve(profile_path(REPO, "postgres-rabbitmq"))}
    assert specs["statestore"].version == specs["modelstore"].version == "v2"
    assert specs["statestore"].metadata["actorStateStore"] == "true"
    assert specs["statestore"].metadata["tablePrefix"] != specs["modelstore"].metadata["tablePrefix"]
    pubsub = specs["pubsub"].metadata
    assert pubsub["durable"] == "true" and pubsub["deletedWhenUnused"] == "false"
    assert pubsub["requeueInFailure"] == pubsub["enableDeadLetter"] == pubsub["publisherConfirm"] == "true"
