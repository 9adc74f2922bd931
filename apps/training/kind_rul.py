"""The `rul` model kind: remaining useful life regressed on runs to failure (C-MAPSS layout), LightGBM.

The fitting itself is apps/training/quality.py (the shared feature pipeline, per-condition
normalisation, ONNX export checked within 1e-4). Held out for the gate: one run in five, fixed per run
(runs.is_held_out; a C-MAPSS file's units 5, 10, ... exactly as once imported), each cut at fixed random
points; the gate compares capped RMSE (better by the margin) and PHM08 score (no worse).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np

from apps.common import cmapss
from apps.common.contracts import ModelCard, TrainRequest
from apps.common.profiles import EquipmentProfile
from apps.training.drift import reference
from apps.training.history import Life
from apps.training.kinds import KindData, NoNewData, Progress
from apps.training.promotion import RUL_RULE
from apps.training.quality import evaluate_onnx, run_training
from apps.training.runs import HELD_OUT_EVERY, labelled_runs
from apps.training.trainer import fingerprint_units

CMAPSS_DATASETS: Final = cmapss.SUBSETS
SPLIT_RULE: Final = f"runs to failure; one run in {HELD_OUT_EVERY} is held out for the promotion gate"


def split_held_out(units: dict[int, np.ndarray]) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """A dataset file's (machines to fit on, machines the gate scores on): by unit number, as runs.py
    splits the same units once imported (fd001-005 ...), so both sources hold out the same engines."""
    held = {u: t for u, t in units.items() if u % HELD_OUT_EVERY == 0}
    return {u: t for u, t in units.items() if u not in held}, held


def cmapss_units(request: TrainRequest, profile: EquipmentProfile) -> tuple[str, dict[int, np.ndarray]]:
    """The C-MAPSS training file a request names (FD001 by default), for a profile with its channels."""
    subset = request.dataset or "FD001"
    if subset not in CMAPSS_DATASETS:
        raise ValueError(f"{subset} is not a C-MAPSS file; {profile.name!r} trains on {CMAPSS_DATASETS}")
    missing = [c for c in profile.required_channels if c not in cmapss.COLUMNS]
    if missing:
        raise ValueError(f"the C-MAPSS files have no {', '.join(missing)}: not {profile.name!r} data")
    return subset, cmapss.load_train(subset)


class RulTrainer:
    kind: Final = "rul"
    rule: Final = RUL_RULE

    def dataset(self, request: TrainRequest, profile: EquipmentProfile) -> KindData:
        subset, units = cmapss_units(request, profile)
        fit, held = split_held_out(units)
        keys = [f"{subset.lower()}-{u:03d}#0" for u in sorted(units)]  # as `vigil import` names them
        return KindData(fit, held, keys, fingerprint_units(fit), len(fit), len(held), SPLIT_RULE)

    def archive(self, lives: Sequence[Life], profile: EquipmentProfile) -> KindData:
        runs = labelled_runs(lives, profile)
        if not runs.keys:
            raise NoNewData(
                f"no {profile.name} run to failure in the archive: record failures with POST "
                "/v1/equipment/{id}/events, or import history with `vigil import`"
            )
        fit, held = runs.fit, runs.held_out
        keys = sorted(runs.all_keys)
        return KindData(
            fit, held, keys, fingerprint_units(fit), len(fit), len(held), SPLIT_RULE, runs.skipped
        )

    def fit(
        self,
        profile: EquipmentProfile,
        data: KindData,
        version: int,
        params: Mapping[str, Any],
        report: Progress,
    ) -> tuple[ModelCard, bytes]:
        outcome = run_training(
            profile=profile,
            train_units=data.fit,
            held_out=data.held_out,
            version=version,
            name=profile.model_name,
            params=params,
            progress=report,
        )
        # The drift reference: the training rows' distribution of each feature, kept in the card.
        rows = outcome.training_set
        card = outcome.card.model_copy(
            update={"feature_reference": reference(rows.X, rows.feature_names), "kind": self.kind}
        )
        return card, outcome.onnx_bytes

    def evaluate(
        self, onnx: bytes, card: ModelCard, data: KindData, profile: EquipmentProfile
    ) -> dict[str, float]:
        # each version fed the features of its own card's spec (window, operating conditions)
        return evaluate_onnx(onnx, card, data.held_out, profile)
