"""How sidecars know each other: localdapr's stand-in for daprd's mTLS identities.

daprd sidecars call each other over mTLS with certificates from Sentry, and a callee reads the caller's
app id from the certificate's SPIFFE id (access control decides on it). localdapr sidecars call each
other over plain HTTP on 127.0.0.1, so a caller proves its app id with an HMAC of it under a key shared
by the sidecars of one run: `trust.key` in the registry folder (0600, made by the first sidecar, made
anew by each `vigil up`). A local process that can read that file, or a sidecar's environment, can
forge what it likes, as it could read daprd's certificates; one that cannot is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

KEY_FILE = "trust.key"
# The tokens `vigil up` made for a run, beside the key, for the local tools that call an app as its
# sidecar does (vigil alerts, vigil replay): {app id: {"DAPR_API_TOKEN": ..., "APP_API_TOKEN": ...}}.
TOKENS_FILE = "app-tokens"
CALLER_HEADER = "localdapr-caller-identity"
AUTH_HEADER = "localdapr-sidecar-auth"


def load_key(folder: Path) -> bytes:
    """The run's key in `folder`, made (0600, atomically) when there is none yet."""
    path = folder / KEY_FILE
    try:
        return bytes.fromhex(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        pass
    tmp = folder / f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_hex(32))
    try:
        os.link(tmp, path)  # fails if another sidecar made one meanwhile: everyone uses the first
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return bytes.fromhex(path.read_text().strip())


def forget_key(folder: Path) -> None:
    """A new run gets a new key (the launcher calls this before starting any sidecar)."""
    (folder / KEY_FILE).unlink(missing_ok=True)


class SidecarTrust:
    """Signs this sidecar's calls to other sidecars and checks the app id on calls it receives."""

    def __init__(self, folder: Path, identity: str) -> None:
        self._key = load_key(folder)
        self.identity = identity  # spiffe://<trust domain>/ns/<namespace>/<app id>, as in daprd's certificate
        self.headers = {CALLER_HEADER: identity, AUTH_HEADER: self._sign(identity)}

    def _sign(self, identity: str) -> str:
        return hmac.new(self._key, identity.encode(), hashlib.sha256).hexdigest()

    def caller(self, headers: Mapping[str, str]) -> str | None:
        """The identity a request proves it comes from (another sidecar of this run), else None."""
        identity, auth = headers.get(CALLER_HEADER), headers.get(AUTH_HEADER)
        if not identity or not auth:
            return None
        return identity if hmac.compare_digest(self._sign(identity), auth) else None
