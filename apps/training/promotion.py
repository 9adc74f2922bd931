"""The promotion gate (pure): a candidate replaces the champion only if it is better where it counts.

Both models are scored on the same held-out training machines, cut at the same random points (never
on a test set); the candidate is promoted if its capped RMSE is lower by at least the configured
relative margin and its PHM08 score is no worse, or if an operator forces it. Every decision keeps
both sets of numbers, so `vigil models show` can say why a version is or is not the champion.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Final

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from apps.common.features import OperatingConditions
from apps.common.profiles import EquipmentProfile
from apps.training.quality import last_features, score, truncate_runs

DEFAULT_MARGIN: Final = 0.02  # the candidate's capped RMSE must be at least 2% lower
GATE_SEED: Final = 2024  # the same cuts for every comparison, so numbers are comparable over time


class GateResult(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    candidate_version: int = Field(ge=1)
    champion_version: int | None
    promoted: bool
    forced: bool
    reason: str
    candidate: dict[str, float]
    champion: dict[str, float] | None
    margin: float
    decided_at: datetime


def holdout_metrics(
    predict: Callable[[np.ndarray], np.ndarray],
    units: Mapping[int, np.ndarray],
    profile: EquipmentProfile,
    conditions: OperatingConditions | None,
    rul_cap: float = 125.0,
    per_unit: int = 5,
) -> dict[str, float]:
    """Metrics of one model on held-out machines' runs truncated at the gate's fixed random points."""
    cut, truth = truncate_runs(units, per_unit, GATE_SEED)
    ids, X = last_features(cut, profile, conditions)
    return score(np.array([truth[i] for i in ids]), predict(X), rul_cap, len(cut))


def decide(
    candidate_version: int,
    candidate: Mapping[str, float],
    champion_version: int | None,
    champion: Mapping[str, float] | None,
    *,
    margin: float = DEFAULT_MARGIN,
    force: bool = False,
    now: datetime | None = None,
) -> GateResult:
    def result(promoted: bool, reason: str) -> GateResult:
        return GateResult(
            candidate_version=candidate_version,
            champion_version=champion_version,
            promoted=promoted,
            forced=force,
            reason=reason,
            candidate=dict(candidate),
            champion=None if champion is None else dict(champion),
            margin=margin,
            decided_at=now or datetime.now(UTC),
        )

    if force:
        return result(True, "forced by an operator")
    if champion is None:
        return result(True, "no champion yet")
    needed = champion["rmse_capped"] * (1.0 - margin)
    if candidate["rmse_capped"] > needed:
        return result(
            False,
            f"capped RMSE {candidate['rmse_capped']:.3f} is not below {needed:.3f} "
            f"(champion {champion['rmse_capped']:.3f} less {margin:.0%})",
        )
    if candidate["phm08_score"] > champion["phm08_score"]:
        return result(
            False,
            f"PHM08 score {candidate['phm08_score']:.1f} is worse than the champion's "
            f"{champion['phm08_score']:.1f}",
        )
    return result(
        True,
        f"capped RMSE {candidate['rmse_capped']:.3f} vs {champion['rmse_capped']:.3f}, "
        f"PHM08 {candidate['phm08_score']:.1f} vs {champion['phm08_score']:.1f}",
    )
