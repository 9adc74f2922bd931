"""ServedSpecs: the actor host learns the served version's feature spec from inference's card, once per
version; a version inference refused (409 after a hot swap) is forgotten and asked again."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from apps.common.contracts import FeatureVector, ModelCard, PredictResponse
from apps.common.features import FeatureSpec, OperatingConditions
from apps.common.profiles import TURBOFAN
from apps.equipment.ports import InferenceUnavailable, ServedSpecs


def card(version: int, spec: FeatureSpec | None) -> ModelCard:
    return ModelCard(
        name=TURBOFAN.model_name,
        version=version,
        created_at=datetime.now(UTC),
        profile=TURBOFAN.name,
        feature_names=["f"],
        metrics={},
        training_data_fingerprint="0" * 64,
        rul_cap=125.0,
        n_train_rows=1,
        n_train_units=1,
        onnx_sha256=hashlib.sha256(b"").hexdigest(),
        features=spec,
    )


class Inference:
    def __init__(self, served: ModelCard) -> None:
        self.served = served
        self.asked = 0

    async def predict(
        self, model_name: str, features: list[FeatureVector], model_version: int | None = None
    ) -> PredictResponse:
        raise NotImplementedError

    async def served_card(self, model_name: str) -> ModelCard:
        self.asked += 1
        return self.served


async def test_the_served_spec_is_asked_once_per_version_and_again_after_a_swap() -> None:
    v1 = FeatureSpec(window=TURBOFAN.window)
    inference = Inference(card(1, v1))
    specs = ServedSpecs(inference)
    assert await specs.get(TURBOFAN) == (1, v1)
    assert await specs.get(TURBOFAN) == (1, v1) and inference.asked == 1
    n = len(TURBOFAN.informative_sensors)
    one = OperatingConditions(centres=[[0.0, 0.0, 0.0]], spans=[1.0] * 3, means=[[0.0] * n], stds=[[1.0] * n])
    v2 = FeatureSpec(window=TURBOFAN.window, conditions=one)
    inference.served = card(2, v2)
    specs.forget(TURBOFAN.model_name, 7)  # not the version known: nothing forgotten
    assert (await specs.get(TURBOFAN))[0] == 1
    specs.forget(TURBOFAN.model_name, 1)  # inference said 409 for v1
    assert await specs.get(TURBOFAN) == (2, v2) and inference.asked == 2


async def test_a_card_without_a_spec_is_the_profiles_window_over_raw_sensors() -> None:
    specs = ServedSpecs(Inference(card(3, None)))
    assert await specs.get(TURBOFAN) == (3, FeatureSpec(window=TURBOFAN.window))


async def test_a_model_with_another_window_is_not_served_to_this_profile() -> None:
    specs = ServedSpecs(Inference(card(4, FeatureSpec(window=TURBOFAN.window + 1))))
    with pytest.raises(InferenceUnavailable, match="window"):
        await specs.get(TURBOFAN)
