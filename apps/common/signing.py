"""Signed model registry records: training signs what makes a model serve, inference verifies it.

The `modelstore` component is scoped to training and inference, and a component scope cannot make it
read-only for one of them: any process holding inference's sidecar could write a champion pointer or an
ONNX artefact there (issue 10, "forgery from inside the host"). So training signs, with an Ed25519
private key only it can read from the secret store, each version's record (the SHA-256 of its card as
stored and of its ONNX bytes, with its name and version) and each champion pointer (name, version and a
serial that only grows); inference verifies with the public key and serves nothing that does not verify.

Keys are the raw 32 bytes in standard base64, as `localdapr/secretsfile.py` generates them and
`vigil secrets keypair` prints them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from dapr.aio.clients import DaprClient

from apps.common.names import MODEL_SIGNING_STORE

# The secret names in the local profiles' file store (nestedSeparator ":"); in Kubernetes the keys come
# from the Secret vigil-model-signing through the apps' environment instead (README, Deploy).
PRIVATE_KEY_SECRET = "model-signing:private-key"
PUBLIC_KEY_SECRET = "model-signing:public-key"

log = logging.getLogger("signing")


class ForgedRecord(Exception):
    """A registry record whose signature is missing or does not verify: never served."""


class BadKey(ValueError):
    """A key that is not base64 of 32 raw bytes."""


def _raw(value: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadKey(f"the model-signing {what} key is not base64: {exc}") from exc
    if len(raw) != 32:
        raise BadKey(f"the model-signing {what} key must be 32 bytes (base64), got {len(raw)}")
    return raw


def version_payload(name: str, version: int, card_json: bytes, onnx: bytes) -> bytes:
    """What a version's signature covers: which model and version, its card and its artefact."""
    return _canonical(
        "version",
        name=name,
        version=version,
        card_sha256=hashlib.sha256(card_json).hexdigest(),
        onnx_sha256=hashlib.sha256(onnx).hexdigest(),
    )


def champion_payload(name: str, version: int, serial: int) -> bytes:
    return _canonical("champion", name=name, version=version, serial=serial)


def _canonical(kind: str, **fields: object) -> bytes:
    # A prefix per record kind: a version's signature can never pass as a champion pointer's.
    return f"vigil-model-registry/{kind}/1\n".encode() + json.dumps(fields, sort_keys=True).encode()


class RecordVerifier:
    def __init__(self, public_key_b64: str) -> None:
        self.key = Ed25519PublicKey.from_public_bytes(_raw(public_key_b64, "public"))

    def verify(self, payload: bytes, signature_b64: str | None, what: str) -> None:
        if not signature_b64:
            raise ForgedRecord(f"{what} is not signed")
        try:
            self.key.verify(base64.b64decode(signature_b64, validate=True), payload)
        except (InvalidSignature, binascii.Error, ValueError) as exc:
            raise ForgedRecord(f"{what}: the signature does not verify") from exc


class RecordSigner:
    def __init__(self, private_key_b64: str) -> None:
        self.key = Ed25519PrivateKey.from_private_bytes(_raw(private_key_b64, "private"))

    def sign(self, payload: bytes) -> str:
        return base64.b64encode(self.key.sign(payload)).decode()

    def verifier(self) -> RecordVerifier:
        public = self.key.public_key().public_bytes_raw()
        return RecordVerifier(base64.b64encode(public).decode())


async def read_key(client: DaprClient, store: str, secret: str) -> str | None:
    """A key from the Dapr secret store; None (logged) when the store or the secret is not there or this
    app may not read it (secret scopes)."""
    try:
        got = await client.get_secret(store, secret)
    except Exception as exc:  # the SDK raises several types for "no such store/secret/permission"
        log.warning("cannot read %s from secret store %s: %s", secret, store, exc)
        return None
    values = list(got.secret.values())
    # The file store answers {name: value}; a store keyed by object answers {key: value}: one value.
    return values[0] if len(values) == 1 else None


async def load_signer(client: DaprClient, configured: str | None) -> RecordSigner | None:
    """Training's signer: the configured key, else the one in the modelsigning secret store. Without one
    training still trains (logged), but inference serves none of the models it registers."""
    key = configured or await read_key(client, MODEL_SIGNING_STORE, PRIVATE_KEY_SECRET)
    if not key:
        log.error(
            "no model-signing key (VIGIL_TRAINING_SIGNING_KEY or %s in the %s secret store): models "
            "registered now will not be served by inference",
            PRIVATE_KEY_SECRET,
            MODEL_SIGNING_STORE,
        )
        return None
    try:
        return RecordSigner(key)
    except BadKey as exc:
        log.error("%s: models registered now will not be served by inference", exc)
        return None
