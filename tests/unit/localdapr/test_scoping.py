"""Pub/sub topic scoping and secret scopes, read as daprd reads them (localdapr/scoping.py)."""

from __future__ import annotations

import pytest

from localdapr.errors import ComponentError, DaprError
from localdapr.scoping import SecretScopes, TopicScopes, scoped_topics

SCOPES = "app1=topic1;app2=topic2,topic3;app3="


def test_scoped_topics_per_app() -> None:
    assert scoped_topics(SCOPES, "app1") == ["topic1"]
    assert scoped_topics(SCOPES, "app2") == ["topic2", "topic3"]
    assert scoped_topics(SCOPES, "app3") == [""]  # listed with nothing: no topic at all
    assert scoped_topics(SCOPES, "app4") == []  # not listed: no restriction of its own
    assert scoped_topics(" app1 = a , b ", "app1") == ["a", "b"]  # daprd drops every space


def test_publishing_scopes() -> None:
    assert TopicScopes.of({"publishingScopes": SCOPES}, "app1").may_publish("topic1")
    assert not TopicScopes.of({"publishingScopes": SCOPES}, "app1").may_publish("topic2")
    assert not TopicScopes.of({"publishingScopes": SCOPES}, "app3").may_publish("topic1")
    assert TopicScopes.of({"publishingScopes": SCOPES}, "app4").may_publish("anything")


def test_protected_topics_need_a_scope_and_allowed_topics_bind_everyone() -> None:
    meta = {
        "protectedTopics": "alerts",
        "publishingScopes": "equipment=alerts",
        "allowedTopics": "alerts,other",
    }
    assert TopicScopes.of(meta, "equipment").may_publish("alerts")
    assert not TopicScopes.of(meta, "forger").may_publish("alerts")
    assert TopicScopes.of(meta, "forger").may_publish("other")
    assert not TopicScopes.of(meta, "equipment").may_publish("elsewhere")
    assert not TopicScopes.of(meta, "forger").may_subscribe("alerts")  # protected for both directions


def test_secret_scopes() -> None:
    spec = {
        "secrets": {
            "scopes": [
                {"storeName": "open", "deniedSecrets": ["root"]},
                {"storeName": "closed", "defaultAccess": "deny", "allowedSecrets": ["webhook"]},
                {"storeName": "shut", "defaultAccess": "deny"},
            ]
        }
    }
    scopes = SecretScopes.from_configuration(spec, "config.yaml")
    assert scopes.allows("open", "anything") and not scopes.allows("open", "root")
    assert scopes.allows("closed", "webhook") and not scopes.allows("closed", "other")
    assert not scopes.allows("shut", "anything")
    assert scopes.allows("unscoped", "anything")
    with pytest.raises(DaprError) as denied:
        scopes.check("shut", "k")
    assert denied.value.code == "ERR_PERMISSION_DENIED" and denied.value.http_status == 403
    assert denied.value.message == 'access denied by policy to get "k" from "shut"'
    with pytest.raises(ComponentError, match="storeName is required"):
        SecretScopes.from_configuration({"secrets": {"scopes": [{"defaultAccess": "deny"}]}}, "config.yaml")
