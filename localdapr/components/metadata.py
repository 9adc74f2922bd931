"""A component's metadata values as daprd resolves them at load time: `secretKeyRef` read from the
component's `auth.secretStore`, `envRef` from the sidecar's environment, `{appID}` in plain values."""

from __future__ import annotations

import os
from collections.abc import Mapping

from localdapr.components.spec import ComponentSpec
from localdapr.errors import ComponentError
from localdapr.secrets.local import SecretNotFound, SecretStore


def resolve_metadata(spec: ComponentSpec, app_id: str, secret_stores: Mapping[str, SecretStore]) -> None:
    """Sets `spec.metadata` to the resolved values; ComponentError naming the field otherwise.
    `secret_stores`: the stores loaded before this component, by name."""
    resolved: dict[str, str] = {}
    for entry in spec.entries:
        if entry.secret_ref is not None:
            resolved[entry.name] = _secret_value(spec, entry.name, *entry.secret_ref, secret_stores)
        elif entry.env_ref is not None:
            resolved[entry.name] = os.environ.get(entry.env_ref, "")
        else:
            resolved[entry.name] = (entry.value or "").replace("{appID}", app_id)
    spec.metadata = resolved


def _secret_value(
    spec: ComponentSpec, field_name: str, name: str, key: str | None, secret_stores: Mapping[str, SecretStore]
) -> str:
    if not spec.secret_store:
        raise ComponentError(
            f"{spec.file}: component {spec.name!r}: metadata field {field_name!r} uses secretKeyRef but "
            "the component has no auth.secretStore"
        )
    store = secret_stores.get(spec.secret_store)
    if store is None:
        raise ComponentError(
            f"{spec.file}: component {spec.name!r}: auth.secretStore {spec.secret_store!r} is not a "
            "loaded secret store"
        )
    try:
        values = store.get(name)
    except SecretNotFound as exc:
        raise ComponentError(
            f"{spec.file}: component {spec.name!r}: metadata field {field_name!r}: secret {name!r} not "
            f"found in secret store {spec.secret_store!r}"
        ) from exc
    if key is None:
        return next(iter(values.values()))
    if key not in values:
        raise ComponentError(
            f"{spec.file}: component {spec.name!r}: metadata field {field_name!r}: secret {name!r} has "
            f"no key {key!r}"
        )
    return values[key]
