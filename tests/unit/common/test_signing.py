"""Signing and verifying the model registry's records (apps/common/signing.py)."""

from __future__ import annotations

import pytest

from apps.common.signing import (
    BadKey,
    ForgedRecord,
    RecordSigner,
    RecordVerifier,
    champion_payload,
    version_payload,
)
from localdapr.secretsfile import ed25519_pair

PAIR = ed25519_pair()
SIGNER = RecordSigner(PAIR["private-key"])
VERIFIER = RecordVerifier(PAIR["public-key"])
CARD, ONNX = b'{"name": "m", "version": 3}', b"onnx bytes"


def test_a_signed_version_verifies() -> None:
    payload = version_payload("m", 3, CARD, ONNX)
    VERIFIER.verify(payload, SIGNER.sign(payload), "m v3")
    SIGNER.verifier().verify(payload, SIGNER.sign(payload), "m v3")


@pytest.mark.parametrize(
    "changed",
    [
        version_payload("m", 3, CARD, ONNX + b"!"),  # another artefact
        version_payload("m", 3, CARD.replace(b"3", b"4"), ONNX),  # another card
        version_payload("m", 4, CARD, ONNX),  # the same record moved to another version
        version_payload("other", 3, CARD, ONNX),  # or another model
        champion_payload("m", 3, 1),  # a version's signature is no champion pointer's
    ],
)
def test_a_signature_covers_name_version_card_and_artefact(changed: bytes) -> None:
    signature = SIGNER.sign(version_payload("m", 3, CARD, ONNX))
    with pytest.raises(ForgedRecord, match="does not verify"):
        VERIFIER.verify(changed, signature, "m v3")


def test_a_champion_pointer_covers_its_version_and_serial() -> None:
    signature = SIGNER.sign(champion_payload("m", 3, 7))
    VERIFIER.verify(champion_payload("m", 3, 7), signature, "pointer")
    for changed in (champion_payload("m", 4, 7), champion_payload("m", 3, 8)):
        with pytest.raises(ForgedRecord):
            VERIFIER.verify(changed, signature, "pointer")


@pytest.mark.parametrize(("signature", "words"), [(None, "not signed"), ("", "not signed"), ("%%", "verify")])
def test_missing_or_garbled_signatures_are_refused(signature: str | None, words: str) -> None:
    with pytest.raises(ForgedRecord, match=words):
        VERIFIER.verify(champion_payload("m", 3, 7), signature, "pointer")


def test_another_keys_signature_is_refused() -> None:
    other = RecordSigner(ed25519_pair()["private-key"])
    payload = champion_payload("m", 3, 7)
    with pytest.raises(ForgedRecord):
        VERIFIER.verify(payload, other.sign(payload), "pointer")


@pytest.mark.parametrize("key", ["not base64!", "AAAA", ""])
def test_bad_keys_are_clear_errors(key: str) -> None:
    with pytest.raises(BadKey, match="model-signing"):
        RecordVerifier(key)
    with pytest.raises(BadKey, match="model-signing"):
        RecordSigner(key)
