"""Drift leaves out the features a model does not use (its card's `unused_features`; the age of a
`failure` or `anomaly` card from before it said), from inference's counts and from the archive's rows
alike: their PSI is noise (a fleet ages by itself) and must not set the report's level."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import numpy as np
import pytest

from apps.common.contracts import ModelCard
from apps.common.features import AGE_FEATURE
from apps.common.registry import InputCounts
from apps.inference.inputs import InputTally
from apps.training.drift import counts_report, drift_report, reference, unused_features

NOW = datetime(2026, 11, 30, tzinfo=UTC)
FEATURES = ["torque__mean", "speed__mean", AGE_FEATURE]
RNG = np.random.default_rng(5)
TRAIN = np.column_stack([RNG.normal(size=(2000, 2)), RNG.uniform(1, 200, 2000)])
# the sensors as in training, the machines a thousand readings older: only the age moved
OLDER = np.column_stack([RNG.normal(size=(500, 2)), RNG.uniform(1000, 1200, 500)])


def card(kind: str | None, unused: list[str] | None) -> ModelCard:
    digest = hashlib.sha256(b"x").hexdigest()
    return ModelCard(
        name="milling-failure",
        version=1,
        created_at=NOW,
        profile="milling",
        kind=kind,  # type: ignore[arg-type]
        feature_names=FEATURES,
        metrics={},
        training_data_fingerprint=digest,
        rul_cap=None,
        n_train_rows=len(TRAIN),
        n_train_units=1,
        onnx_sha256=digest,
        feature_reference=reference(TRAIN, FEATURES),
        unused_features=unused,
    )


def counted(c: ModelCard, rows: np.ndarray) -> InputCounts:
    tally = InputTally.of(c, NOW, 3600)
    assert tally is not None
    tally.add(rows.astype(np.float32), NOW)
    return tally.snapshot(NOW)


@pytest.mark.parametrize(
    ("kind", "unused", "expected"),
    [
        ("failure", [AGE_FEATURE], {AGE_FEATURE}),
        ("anomaly", None, {AGE_FEATURE}),  # a card from before it said: its kind held the age constant
        ("failure", None, {AGE_FEATURE}),
        ("rul", None, set()),  # the RUL model splits on the age
        (None, None, set()),
        ("anomaly", [], set()),  # said, and nothing unused
    ],
)
def test_the_unused_features_come_from_the_card(
    kind: str | None, unused: list[str] | None, expected: set[str]
) -> None:
    assert unused_features(card(kind, unused)) == expected


def test_an_aged_fleet_is_not_drift_of_a_model_that_ignores_the_age() -> None:
    c = card("failure", [AGE_FEATURE])
    refs = c.feature_reference or []
    blind = drift_report(c.name, 1, refs, OLDER, machines=3, now=NOW, ignored=unused_features(c))
    assert blind.ignored == [AGE_FEATURE] and {f.name for f in blind.features} == set(FEATURES[:2])
    assert blind.level == "stable" and blind.max_psi < 0.1
    seeing = drift_report(c.name, 1, refs, OLDER, machines=3, now=NOW)  # a model that uses the age
    assert seeing.ignored == [] and seeing.features[0].name == AGE_FEATURE and seeing.level == "significant"


def test_inference_counts_leave_the_unused_feature_out_even_when_not_counted() -> None:
    c = card("anomaly", [AGE_FEATURE])
    refs = c.feature_reference or []
    counts = counted(c, OLDER)
    from_counts = counts_report(refs, counts, NOW, ignored=unused_features(c))
    from_rows = drift_report(
        c.name, 1, refs, OLDER.astype(np.float32).astype(np.float64), 3, NOW, ignored={AGE_FEATURE}
    )
    assert [f.name for f in from_counts.features] == [f.name for f in from_rows.features]
    assert [f.psi for f in from_counts.features] == pytest.approx([f.psi for f in from_rows.features])
    assert from_counts.ignored == [AGE_FEATURE] and from_counts.level == "stable"
    # its counts are not even read: a count that does not fit the card is no refusal for it
    without_age = counts.model_copy(
        update={"features": [f for f in counts.features if f.name != AGE_FEATURE]}
    )
    assert counts_report(refs, without_age, NOW, ignored={AGE_FEATURE}).max_psi == from_counts.max_psi
    with pytest.raises(ValueError, match="counts of 'age_cycles' are not in the reference's bins"):
        counts_report(refs, without_age, NOW)
