"""Dapr's state key prefixing: how an app's key becomes the physical key in the store."""

from __future__ import annotations

from localdapr.errors import state_illegal_key

KEY_DELIMITER = "||"


def key_prefix(strategy: str, app_id: str, store_name: str, namespace: str | None = None) -> str:
    """The prefix for `keyPrefix` = appid (default) | name | namespace | none | <literal>."""
    match strategy.lower() if strategy else "appid":
        case "appid":
            return app_id
        case "name":
            return store_name
        case "namespace":
            return f"{namespace}.{app_id}" if namespace else app_id
        case "none":
            return ""
        case _:
            return strategy


def physical_key(prefix: str, key: str, store: str) -> str:
    if KEY_DELIMITER in key:
        raise state_illegal_key(store, key)
    return f"{prefix}{KEY_DELIMITER}{key}" if prefix else key


def logical_key(prefix: str, physical: str) -> str:
    head = f"{prefix}{KEY_DELIMITER}" if prefix else ""
    return physical[len(head) :] if head and physical.startswith(head) else physical
