"""The pub/sub topic scoping shipped in every profile and overlay: the same everywhere, only Vigil's app
ids and topics, and every subscription an app declares allowed by it."""

from __future__ import annotations

from pathlib import Path

import yaml

from apps.common import names
from localdapr.scoping import TopicScopes
from tests.unit.deploy.test_k8s_manifests import declared_subscriptions

REPO = Path(__file__).resolve().parents[3]
FILES = [
    REPO / "components" / "pubsub.yaml",
    *(REPO / "components" / profile / "pubsub.yaml" for profile in ("embedded", "postgres-rabbitmq", "mqtt")),
    *(
        REPO / "k8s" / "overlays" / overlay / "pubsub.yaml"
        for overlay in ("redis", "postgres-rabbitmq", "mqtt")
    ),
]
KEYS = ("protectedTopics", "publishingScopes", "subscriptionScopes")
TOPICS = {value for key, value in vars(names).items() if key.startswith("TOPIC_")}


def scoping(file: Path) -> dict[str, str]:
    doc = yaml.safe_load(file.read_text())
    return {e["name"]: e["value"] for e in doc["spec"]["metadata"] if e["name"] in KEYS}


def test_every_pubsub_file_scopes_topics_alike() -> None:
    first = scoping(FILES[0])
    assert set(first) == set(KEYS)
    for file in FILES[1:]:
        assert scoping(file) == first, file


def test_every_vigil_topic_is_protected_and_only_vigil_names_are_used() -> None:
    meta = scoping(FILES[0])
    assert set(meta["protectedTopics"].split(",")) == TOPICS
    for key in ("publishingScopes", "subscriptionScopes"):
        for entry in meta[key].split(";"):
            app_id, _, topics = entry.partition("=")
            assert app_id in names.ALL_APP_IDS, entry
            assert set(filter(None, topics.split(","))) <= TOPICS, entry


def test_only_equipment_publishes_alerts_and_health() -> None:
    meta = scoping(FILES[0])
    for app_id in names.ALL_APP_IDS:
        allowed = TopicScopes.of(meta, app_id).may_publish(names.TOPIC_ALERTS)
        assert allowed == (app_id == names.EQUIPMENT_APP_ID), app_id
    assert not TopicScopes.of(meta, "forger").may_publish(names.TOPIC_EQUIPMENT_HEALTH)


def test_every_declared_subscription_is_allowed() -> None:
    meta = scoping(FILES[0])
    declared = declared_subscriptions()
    assert declared
    for app_id, pubsub, topic, _route, _dead_letter, _bulk in declared:
        assert pubsub == names.PUBSUB
        assert TopicScopes.of(meta, app_id).may_subscribe(topic), (app_id, topic)
