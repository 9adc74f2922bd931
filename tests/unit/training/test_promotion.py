"""The promotion gate: better by the margin and no worse on PHM08, or forced; numbers kept."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from apps.common import cmapss
from apps.common.features import FeatureSpec
from apps.common.profiles import TURBOFAN
from apps.training.promotion import decide
from apps.training.quality import holdout_metrics

CHAMPION = {"rmse_capped": 12.0, "phm08_score": 300.0}
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_first_model_is_promoted() -> None:
    gate = decide(1, CHAMPION, None, None, now=NOW)
    assert gate.promoted and gate.reason == "no champion yet" and gate.champion is None


def test_promoted_only_when_better_by_the_margin_and_no_worse_on_phm08() -> None:
    assert decide(2, {"rmse_capped": 11.0, "phm08_score": 290.0}, 1, CHAMPION, margin=0.05, now=NOW).promoted
    slightly = decide(2, {"rmse_capped": 11.9, "phm08_score": 250.0}, 1, CHAMPION, margin=0.05, now=NOW)
    assert not slightly.promoted and "not below 11.400" in slightly.reason
    later = decide(2, {"rmse_capped": 10.0, "phm08_score": 301.0}, 1, CHAMPION, margin=0.05, now=NOW)
    assert not later.promoted and "PHM08" in later.reason
    assert later.candidate == {"rmse_capped": 10.0, "phm08_score": 301.0} and later.champion == CHAMPION


def test_force_overrides_and_is_recorded() -> None:
    gate = decide(3, {"rmse_capped": 50.0, "phm08_score": 1e6}, 1, CHAMPION, force=True, now=NOW)
    assert gate.promoted and gate.forced
    assert type(gate).model_validate_json(gate.model_dump_json()) == gate


def test_both_models_are_scored_on_the_same_cuts() -> None:
    train = cmapss.load_train()
    held = {u: train[u] for u in (90, 91, 92)}
    perfect_at_start = holdout_metrics(
        lambda X: np.full(len(X), 125.0), held, TURBOFAN, FeatureSpec(window=TURBOFAN.window)
    )
    again = holdout_metrics(
        lambda X: np.full(len(X), 125.0), held, TURBOFAN, FeatureSpec(window=TURBOFAN.window)
    )
    assert perfect_at_start == again and perfect_at_start["coverage"] == 1.0


def test_a_champion_that_cannot_be_scored_is_kept_unless_forced() -> None:
    gate = decide(2, CHAMPION, 1, None, incomparable="v1 is not in the registry", now=NOW)
    assert not gate.promoted and gate.reason == "not comparable with champion v1: v1 is not in the registry"
    assert decide(2, CHAMPION, 1, None, incomparable="gone", force=True, now=NOW).promoted
