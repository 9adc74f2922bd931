"""Writing component files for the localdapr tests: the three state profiles and the brokers."""

from __future__ import annotations

import uuid
from pathlib import Path

STATE_PROFILES = ("in-memory", "sqlite", "redis")


def component(
    name: str,
    ctype: str,
    metadata: dict[str, str],
    scopes: list[str] | None = None,
    secret_store: str | None = None,
    extra_entries: str = "",
) -> str:
    entries = "".join(f'    - name: {k}\n      value: "{v}"\n' for k, v in metadata.items()) + extra_entries
    body = f"  metadata:\n{entries}" if entries else "  metadata: []\n"
    text = (
        "apiVersion: dapr.io/v1alpha1\nkind: Component\n"
        f"metadata:\n  name: {name}\nspec:\n  type: {ctype}\n  version: v1\n" + body
    )
    if secret_store:
        text += f"auth:\n  secretStore: {secret_store}\n"
    if scopes:
        text += "scopes:\n" + "".join(f"  - {s}\n" for s in scopes)
    return text


def state_component(
    profile: str,
    folder: Path,
    name: str = "statestore",
    redis: str | None = None,
    extra: dict[str, str] | None = None,
) -> str:
    metadata = dict(extra or {})
    if profile == "in-memory":
        return component(name, "state.in-memory", metadata)
    if profile == "sqlite":
        return component(name, "state.sqlite", {"connectionString": str(folder / f"{name}.db"), **metadata})
    assert redis, "redis profile needs a redis address"
    # A unique keyPrefix-free isolation: each test uses a random app id, so keys never collide.
    return component(name, "state.redis", {"redisHost": redis, **metadata})


def write(folder: Path, filename: str, text: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(text)
    return path


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
