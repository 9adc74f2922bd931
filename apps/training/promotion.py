"""The promotion gate (pure): a candidate replaces the champion only if it is better where it counts.

Both models are scored on the same held-out data (never a test set), each fed the features of its own
card's spec; what "better" means is the model kind's `GateRule`: a primary metric that must improve by
at least the configured relative margin and an optional guard metric that must be no worse. `rul`
(RUL_RULE): capped RMSE lower by the margin, PHM08 score no worse, on held-out runs cut at the same
random points (apps.training.quality.evaluate_onnx). Other kinds name theirs in their own module
(apps/training/kind_*.py). An operator may force a promotion. Every decision keeps both sets of
numbers, so `vigil models show` can say why a version is or is not the champion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from pydantic import BaseModel, ConfigDict, Field

DEFAULT_MARGIN: Final = 0.02  # the candidate's primary metric must be at least 2% better


@dataclass(frozen=True, slots=True)
class GateRule:
    """What a kind's gate compares: `primary` must be better by the margin (relative), `guard` (if any)
    no worse; `label`s are how the reason names them."""

    primary: str
    primary_label: str
    primary_lower_is_better: bool
    guard: str | None = None
    guard_label: str = ""
    guard_lower_is_better: bool = True
    digits: int = 3  # decimals of the primary metric in the reason

    def better_enough(self, candidate: float, champion: float, margin: float) -> tuple[bool, float]:
        """(candidate good enough, the value it had to reach)."""
        if self.primary_lower_is_better:
            needed = champion * (1.0 - margin)
            return candidate <= needed, needed
        needed = champion * (1.0 + margin)
        return candidate >= needed, needed


RUL_RULE: Final = GateRule("rmse_capped", "capped RMSE", True, "phm08_score", "PHM08 score", True)


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
    rule: GateRule = RUL_RULE,
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
    r = rule
    cand, champ = candidate[r.primary], champion[r.primary]
    good, needed = r.better_enough(cand, champ, margin)
    d = r.digits
    if not good:
        where = "below" if r.primary_lower_is_better else "above"
        less = "less" if r.primary_lower_is_better else "plus"
        return result(
            False,
            f"{r.primary_label} {cand:.{d}f} is not {where} {needed:.{d}f} "
            f"(champion {champ:.{d}f} {less} {margin:.0%})",
        )
    summary = f"{r.primary_label} {cand:.{d}f} vs {champ:.{d}f}"
    if r.guard is not None:
        g_cand, g_champ = candidate[r.guard], champion[r.guard]
        worse = g_cand > g_champ if r.guard_lower_is_better else g_cand < g_champ
        if worse:
            return result(
                False, f"{r.guard_label} {g_cand:.{d}f} is worse than the champion's {g_champ:.{d}f}"
            )
        summary += f", {r.guard_label} {g_cand:.{d}f} vs {g_champ:.{d}f}"
    return result(True, summary)
