"""Drift from what inference was fed: inference's counts give the PSI the rows themselves give, the
catalog measures the champion on them and reads the archive only when inference has too few (saying
why), and counts that do not fit the card are refused."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import numpy as np
import pytest

from apps.common.contracts import ModelCard
from apps.common.profiles import TURBOFAN
from apps.common.registry import DriftReport, InputCounts
from apps.inference.inputs import InputTally
from apps.training.champions import ChampionConflict, ModelCatalog
from apps.training.drift import counts_report, drift_report, reference
from apps.training.history import Life
from apps.training.inputs import InputsUnavailable
from tests.unit.training.registry_fakes import MemoryRegistry, Published

NAME = TURBOFAN.model_name
NOW = datetime(2026, 11, 30, tzinfo=UTC)
FEATURES = ["a", "b", "c"]
RNG = np.random.default_rng(11)
TRAIN = RNG.normal(size=(2000, 3)).astype(np.float32).astype(np.float64)
SHIFTED = (RNG.normal(size=(400, 3)) + [1.5, 0.0, 0.0]).astype(np.float32)  # feature a moved


def champion_card(version: int = 1) -> ModelCard:
    digest = hashlib.sha256(b"x").hexdigest()
    return ModelCard(
        name=NAME,
        version=version,
        created_at=NOW,
        profile="turbofan",
        feature_names=FEATURES,
        metrics={"rmse": 10.0},
        training_data_fingerprint=digest,
        rul_cap=125.0,
        n_train_rows=2000,
        n_train_units=10,
        onnx_sha256=digest,
        feature_reference=reference(TRAIN, FEATURES),
    )


def counted(rows: np.ndarray, version: int = 1) -> InputCounts:
    """The counts inference keeps of these rows (apps/inference/inputs.py)."""
    tally = InputTally.of(champion_card(version), NOW, 3600)
    assert tally is not None
    tally.add(rows, NOW)
    return tally.snapshot(NOW)


def test_inference_counts_give_the_psi_of_the_rows_themselves() -> None:
    refs = champion_card().feature_reference
    from_counts = counts_report(refs, counted(SHIFTED), NOW)
    from_rows = drift_report(NAME, 1, refs, SHIFTED.astype(np.float64), machines=4, now=NOW)
    assert [f.name for f in from_counts.features] == [f.name for f in from_rows.features]
    assert [f.psi for f in from_counts.features] == pytest.approx([f.psi for f in from_rows.features])
    assert from_counts.features[0].name == "a" and from_counts.level == "significant"
    assert (from_counts.source, from_counts.rows, from_counts.machines, from_counts.since) == (
        "inference",
        400,
        0,
        NOW,
    )
    assert from_counts.basis().startswith("400 rows inference predicted since 2026-11-30")
    assert from_rows.source == "archive" and from_rows.basis() == "400 rows of 4 machines in the archive"


def test_counts_that_do_not_fit_the_card_are_refused() -> None:
    refs = champion_card().feature_reference
    good = counted(SHIFTED)
    moved = good.features[0].model_copy(update={"edges": [e + 1 for e in good.features[0].edges]})
    with pytest.raises(ValueError, match="counts of 'a' are not in the reference's bins"):
        counts_report(refs, good.model_copy(update={"features": [moved, *good.features[1:]]}), NOW)
    with pytest.raises(ValueError, match="inference counted 400 values of 'a' in 401 rows"):
        counts_report(refs, good.model_copy(update={"rows": 401}), NOW)
    with pytest.raises(ValueError, match="counted no rows"):
        counts_report(refs, counted(SHIFTED[:0]), NOW)


class Inputs:
    """InferenceInputs answering set counts, or InputsUnavailable."""

    def __init__(self, counts: InputCounts | None, why: str = "inference answered 503: not ready") -> None:
        self.answer, self.why, self.asked = counts, why, 0

    async def counts(self, name: str) -> InputCounts:
        self.asked += 1
        if self.answer is None:
            raise InputsUnavailable(self.why)
        return self.answer


async def catalog_with(inputs: Inputs) -> tuple[ModelCatalog, MemoryRegistry]:
    registry = MemoryRegistry()
    await registry.register(champion_card(), b"onnx")
    await registry.set_champion(
        NAME, 1, {"version": 1, "previous": None, "action": "gate", "by": "t", "at": "x"}
    )
    catalog = ModelCatalog(registry, Published(), {NAME: TURBOFAN}, inputs=inputs, min_inference_rows=100)  # type: ignore[arg-type]
    return catalog, registry


async def no_archive() -> list[Life]:
    raise AssertionError("the archive is read only when inference has too few rows")


async def test_the_champion_s_drift_is_measured_on_inference_s_counts() -> None:
    inputs = Inputs(counted(SHIFTED))
    catalog, registry = await catalog_with(inputs)
    report = await catalog.compute_drift(NAME, no_archive, recent=20)
    assert report.source == "inference" and report.rows == 400 and report.fallback is None
    assert registry.drift_ is not None and DriftReport.model_validate_json(registry.drift_) == report


@pytest.mark.parametrize(
    ("inputs", "why"),
    [
        (
            Inputs(counted(SHIFTED[:99])),
            "inference counted 99 rows of v1 since 2026-11-30 00:00 UTC, fewer than 100",
        ),
        (Inputs(counted(SHIFTED, version=2)), "inference counted v2, the champion is v1"),
        (Inputs(None), "inference answered 503: not ready"),
    ],
)
async def test_the_archive_is_the_fallback_and_the_report_says_why(inputs: Inputs, why: str) -> None:
    catalog, _ = await catalog_with(inputs)
    read: list[bool] = []

    async def empty_archive() -> list[Life]:
        read.append(True)
        return []

    with pytest.raises(ChampionConflict, match="no running turbofan machine in the archive") as refused:
        await catalog.compute_drift(NAME, empty_archive, recent=20)
    assert why in str(refused.value) and read == [True] and inputs.asked == 1
