"""The promotion gate (pure): a candidate replaces the champion only if it is better where it counts.

Both models are scored on the same held-out training machines, cut at the same random points (never
on a test set), each fed the features of its own card's spec (apps.training.quality.evaluate_onnx);
the candidate is promoted if its capped RMSE is lower by at least the configured relative margin and
its PHM08 score is no worse, or if an operator forces it. Every decision keeps both sets of numbers,
so `vigil models show` can say why a version is or is not the champion.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_MARGIN: Final = 0.02  # the candidate's capped RMSE must be at least 2% lower


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


def decide(
    candidate_version: int,
    candidate: Mapping[str, float],
    champion_version: int | None,
    champion: Mapping[str, float] | None,
    *,
    margin: float = DEFAULT_MARGIN,
    force: bool = False,
    incomparable: str | None = None,
    now: datetime | None = None,
) -> GateResult:
    """`incomparable`: why the champion could not be scored on the held-out machines (then only
    `force`, or having no champion, promotes)."""

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
    if champion_version is None:
        return result(True, "no champion yet")
    if incomparable is not None or champion is None:
        return result(
            False, f"not comparable with champion v{champion_version}: {incomparable or 'no numbers'}"
        )
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
