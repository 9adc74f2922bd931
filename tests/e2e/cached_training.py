"""The training app as e2e platforms run it: apps.training.app, with the RUL kind's fit cached on disk
for one test run.

Most e2e modules start a platform whose training app fits a first RUL model on FD001 at start-up, and
several of them ask for the same model (same data, boosting rounds, seeds, version 1). The fit is the
CPU-heavy part of a platform's start-up, so the first platform of a run to need a model fits it and
the others read it: the job still gathers the data, registers the version signed with the platform's
own key, records its runs, scores it at the promotion gate, promotes and announces it as always; only
`RulTrainer.fit` (LightGBM, the ONNX export and its check, the held-out metrics) is skipped.

The cache is the folder in VIGIL_TEST_MODEL_CACHE, which tests/conftest.py puts under the run's pytest
base temp (shared by the xdist workers of that run, never by two runs). Keys hold everything the fit
depends on: the fitted and the held-out data, the profile, the version, the params and the source of
apps/training and apps/common, so an edit made while the suite runs misses the cache. A file lock per
key lets one worker fit while the others wait for its result.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pickle
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apps.common.contracts import ModelCard
from apps.common.profiles import EquipmentProfile
from apps.training.app import app
from apps.training.kind_rul import RulTrainer
from apps.training.kinds import KindData, Progress

__all__ = ["app", "fit_key"]

CACHE_ENV = "VIGIL_TEST_MODEL_CACHE"
REPO = Path(__file__).resolve().parents[2]


def source_digest() -> str:
    """sha256 over the training and common code (what a fit runs)."""
    digest = hashlib.sha256()
    for folder in ("apps/training", "apps/common"):
        for path in sorted((REPO / folder).rglob("*.py")):
            digest.update(str(path.relative_to(REPO)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def fit_key(profile: EquipmentProfile, data: KindData, version: int, params: Mapping[str, Any]) -> str:
    digest = hashlib.sha256()
    digest.update(repr(profile).encode())
    digest.update(data.fingerprint.encode())
    # the fingerprint covers the fitted runs only; the held-out ones make the card's metrics
    digest.update(pickle.dumps(sorted(data.held_out.items()), protocol=5))
    described = [sorted(data.keys), version, dict(params)]
    digest.update(json.dumps(described, sort_keys=True, default=str).encode())
    digest.update(source_digest().encode())
    return digest.hexdigest()


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def install(cache: Path) -> None:
    uncached = RulTrainer.fit

    def fit(
        self: RulTrainer,
        profile: EquipmentProfile,
        data: KindData,
        version: int,
        params: Mapping[str, Any],
        report: Progress,
    ) -> tuple[ModelCard, bytes]:
        cache.mkdir(parents=True, exist_ok=True)
        key = fit_key(profile, data, version, params)
        card_path, onnx_path = cache / f"{key}.card.json", cache / f"{key}.onnx"
        with locked(cache / f"{key}.lock"):
            if card_path.exists() and onnx_path.exists():
                card = ModelCard.model_validate_json(card_path.read_text())
                # a version made now, as a fit would have made it
                return card.model_copy(update={"created_at": datetime.now(UTC)}), onnx_path.read_bytes()
            card, onnx = uncached(self, profile, data, version, params, report)
            # onnx first: a card on disk means both are complete
            for path, content in ((onnx_path, onnx), (card_path, card.model_dump_json().encode())):
                partial = path.with_suffix(".partial")
                partial.write_bytes(content)
                partial.replace(path)
            return card, onnx

    RulTrainer.fit = fit  # type: ignore[method-assign]


if os.environ.get(CACHE_ENV):
    install(Path(os.environ[CACHE_ENV]))
