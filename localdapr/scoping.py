"""Who may use what, beyond component `scopes`: topics per app on a pub/sub, secrets per secret store.

Pub/sub (a component's metadata, as daprd's runtime/pubsub): `allowedTopics` ("a,b") limits every app
to those topics; `publishingScopes` / `subscriptionScopes` ("app1=t1,t2;app2=;...") give an app listed
there exactly its topics (none after a bare `app=`), an app not listed any topic; `protectedTopics`
("a,b") are topics only an app granted them by a scope may use. A publish outside them is daprd's 403
ERR_PUBSUB_FORBIDDEN; a subscription outside them is not made (logged), as daprd does.

Secrets (the Configuration's `spec.secrets.scopes`, daprd's SecretsScope): per store a `defaultAccess`
(allow by default), `allowedSecrets` (when given, only these) and `deniedSecrets`. A refused read is
daprd's 403 ERR_PERMISSION_DENIED; a bulk read leaves refused secrets out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import grpc

from localdapr.errors import ComponentError, DaprError


def _topics(value: str) -> list[str]:
    # daprd drops every space, then splits on commas (an empty entry stays, and matches no topic).
    return value.replace(" ", "").split(",") if value.replace(" ", "") else []


def scoped_topics(value: str, app_id: str) -> list[str]:
    """daprd's GetScopedTopics: the topics `value` ("app=t1,t2;app2=") gives `app_id` ([] if unlisted)."""
    found: list[str] = []
    for entry in value.replace(" ", "").split(";"):
        key, sep, topics = entry.partition("=")
        if key != app_id:
            continue
        for topic in topics.split(",") if sep else []:
            if topic not in found:
                found.append(topic)
    return found


@dataclass(frozen=True, slots=True)
class TopicScopes:
    allowed: tuple[str, ...]
    protected: tuple[str, ...]
    publishing: tuple[str, ...]
    subscribing: tuple[str, ...]

    @classmethod
    def of(cls, metadata: Mapping[str, str], app_id: str) -> TopicScopes:
        return cls(
            tuple(_topics(metadata.get("allowedTopics", ""))),
            tuple(_topics(metadata.get("protectedTopics", ""))),
            tuple(scoped_topics(metadata.get("publishingScopes", ""), app_id)),
            tuple(scoped_topics(metadata.get("subscriptionScopes", ""), app_id)),
        )

    def may_publish(self, topic: str) -> bool:
        return _allowed(topic, self.allowed, self.protected, self.publishing)

    def may_subscribe(self, topic: str) -> bool:
        return _allowed(topic, self.allowed, self.protected, self.subscribing)


def _allowed(
    topic: str, allowed: tuple[str, ...], protected: tuple[str, ...], scoped: tuple[str, ...]
) -> bool:
    """daprd's IsOperationAllowed."""
    if allowed and topic not in allowed:
        return False
    if topic not in protected and not scoped:
        return True
    return topic in scoped


def publish_forbidden(topic: str, app_id: str) -> DaprError:
    return DaprError(
        "ERR_PUBSUB_FORBIDDEN",
        f"topic {topic} is not allowed for app id {app_id}",
        403,
        grpc.StatusCode.PERMISSION_DENIED,
    )


@dataclass(frozen=True, slots=True)
class SecretScope:
    default_allow: bool
    allowed: tuple[str, ...]
    denied: tuple[str, ...]

    def allows(self, key: str) -> bool:
        if self.allowed:
            return key in self.allowed
        if key in self.denied:
            return False
        return self.default_allow


class SecretScopes:
    def __init__(self, scopes: dict[str, SecretScope]) -> None:
        self.scopes = scopes

    @classmethod
    def from_configuration(cls, spec: Mapping[str, Any], source: str) -> SecretScopes:
        scopes: dict[str, SecretScope] = {}
        for i, raw in enumerate((spec.get("secrets") or {}).get("scopes") or []):
            where = f"{source}: secrets.scopes[{i}]"
            if not isinstance(raw, dict) or not raw.get("storeName"):
                raise ComponentError(f"{where}: storeName is required")
            access = str(raw.get("defaultAccess") or "allow").lower()
            if access not in ("allow", "deny"):
                raise ComponentError(f"{where}.defaultAccess must be allow or deny, got {access!r}")
            scopes[str(raw["storeName"])] = SecretScope(
                access == "allow",
                tuple(str(s) for s in raw.get("allowedSecrets") or []),
                tuple(str(s) for s in raw.get("deniedSecrets") or []),
            )
        return cls(scopes)

    def allows(self, store: str, key: str) -> bool:
        scope = self.scopes.get(store)
        return scope is None or scope.allows(key)

    def check(self, store: str, key: str) -> None:
        if not self.allows(store, key):
            raise DaprError(
                "ERR_PERMISSION_DENIED",
                f'access denied by policy to get "{key}" from "{store}"',
                403,
                grpc.StatusCode.PERMISSION_DENIED,
            )
