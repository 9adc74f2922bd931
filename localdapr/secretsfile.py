"""A local.file secret store's file made on first use from a committed template, never committed itself.

`components/secrets.template.json` holds what is not secret (the local servers' connection strings, the
default webhook URL) and placeholders for what is; `ensure_secrets_file` writes `components/secrets.json`
from it with fresh values for every placeholder, mode 0600, and never replaces a file that exists.
Placeholders are objects with one key, `"$generate"`:

    {"$generate": "token"}     32 random bytes, URL-safe base64
    {"$generate": "ed25519"}   {"private-key": ..., "public-key": ...}: a fresh Ed25519 key pair, each
                               the raw 32 bytes in standard base64

Several processes may do this at once (pytest-xdist workers, sidecars starting together): the file is
written whole under a temporary name and linked into place, so a reader sees either no file or a
complete one, and the first writer wins.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

TEMPLATE_SUFFIX = ".template.json"


class SecretsTemplateError(Exception):
    """The template is not valid JSON or names a generator that does not exist."""


def template_for(secrets_file: Path) -> Path:
    """`components/secrets.json` -> `components/secrets.template.json`."""
    return secrets_file.with_name(secrets_file.name.removesuffix(".json") + TEMPLATE_SUFFIX)


def ed25519_pair() -> dict[str, str]:
    """A fresh key pair as the secret store keeps it (raw bytes, base64)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {
        "private-key": base64.b64encode(private).decode(),
        "public-key": base64.b64encode(public).decode(),
    }


def _fill(value: Any, where: str) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$generate"}:
            kind = value["$generate"]
            if kind == "token":
                return secrets.token_urlsafe(32)
            if kind == "ed25519":
                return ed25519_pair()
            raise SecretsTemplateError(f"{where}: unknown generator {kind!r} (token or ed25519)")
        return {k: _fill(v, f"{where}.{k}") for k, v in value.items()}
    return value


def render(template: Path) -> dict[str, Any]:
    """The template's content with every placeholder replaced by a fresh value."""
    try:
        raw = json.loads(template.read_text())
    except (OSError, ValueError) as exc:
        raise SecretsTemplateError(f"cannot read the secrets template {template}: {exc}") from exc
    if not isinstance(raw, dict):
        raise SecretsTemplateError(f"{template}: expected a JSON object")
    return dict(_fill(raw, template.name))


def ensure_secrets_file(secrets_file: Path) -> bool:
    """Create `secrets_file` from its template when it does not exist; True if this call created it.

    Nothing happens when the file exists (it is never overwritten) or when there is no template."""
    if secrets_file.exists():
        return False
    template = template_for(secrets_file)
    if not template.is_file():
        return False
    content = json.dumps(render(template), indent=2) + "\n"
    temp = secrets_file.with_name(f".{secrets_file.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # O_EXCL + 0600 from the start: the secret values are never readable by others, not even briefly.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temp, secrets_file)  # fails if another process got there first: its file stays
        except FileExistsError:
            return False
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
