"""What the EquipmentActor needs from the outside, as small interfaces with Dapr implementations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import orjson
from dapr.aio.clients import DaprClient

from apps.common.contracts import FeatureVector, ModelCard, PredictResponse
from apps.common.features import FeatureSpec
from apps.common.names import INFERENCE_APP_ID
from apps.common.profiles import EquipmentProfile
from apps.common.publisher import Publisher
from apps.equipment.settings import EquipmentSettings


class InferenceUnavailable(Exception):
    """Inference could not answer (down, slow, no model yet); the actor marks its prediction stale."""


class ModelChanged(Exception):
    """Inference serves another version than the one the features were computed for (a hot swap)."""


class InferenceClient(Protocol):
    async def predict(
        self, model_name: str, features: list[FeatureVector], model_version: int | None = None
    ) -> PredictResponse: ...

    async def served_card(self, model_name: str) -> ModelCard: ...


class DaprInferenceClient:
    """Calls `inference` by Dapr service invocation (the sidecar applies the resiliency policy)."""

    def __init__(self, client: DaprClient) -> None:
        self.client = client

    async def predict(
        self, model_name: str, features: list[FeatureVector], model_version: int | None = None
    ) -> PredictResponse:
        try:
            resp = await self.client.invoke_method(
                INFERENCE_APP_ID,
                "v1/predict",
                data=predict_body(model_name, features, model_version),
                http_verb="POST",
                content_type="application/json",
            )
            return PredictResponse.model_validate_json(resp.data)
        except Exception as exc:  # any other failure of the call is "unavailable" to the actor
            if _status(exc) == 409:
                raise ModelChanged(str(exc)) from exc
            raise InferenceUnavailable(str(exc) or type(exc).__name__) from exc

    async def served_card(self, model_name: str) -> ModelCard:
        try:
            resp = await self.client.invoke_method(
                INFERENCE_APP_ID, f"v1/models/{model_name}", http_verb="GET"
            )
            return ModelCard.model_validate_json(resp.data)
        except Exception as exc:
            raise InferenceUnavailable(str(exc) or type(exc).__name__) from exc


def predict_body(model_name: str, features: list[FeatureVector], model_version: int | None) -> bytes:
    """The JSON of the PredictRequest for `features` (one machine's window positions, or several
    machines' of one feature list), written by orjson from the vectors' lists: building the
    PredictRequest validated every value again (the features were checked finite where computed,
    backlog.py) and cost about as much CPU as computing them; inference validates what it receives."""
    return orjson.dumps(
        {
            "model_name": model_name,
            "feature_names": features[0].feature_names,
            "rows": [f.values for f in features],
            "model_version": model_version,
        }
    )


def _status(exc: Exception) -> int | None:
    """The HTTP status of a failed invocation, as the Dapr SDK reports it (None if it has none)."""
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


class ServedSpecs:
    """Which feature spec the served model wants, learnt from inference's card of it, per model name.

    A model card holds its feature spec (window, operating conditions: apps.common.features). The
    actors of one host ask inference for the served card once per version and share it. Every
    prediction request names the version its rows were computed for; after a hot swap
    (`model-updates`) inference refuses rows computed for the old version with a 409 (`ModelChanged`),
    the actor forgets that spec, fetches the new card and recomputes the same owed windows (raw
    readings are kept until predicted), so a model never scores features it was not trained on.
    """

    def __init__(self, inference: InferenceClient) -> None:
        self._inference = inference
        self._known: dict[str, tuple[int, FeatureSpec]] = {}
        # An anomaly model's score thresholds, learnt with the card (its `alert_thresholds`).
        self._thresholds: dict[tuple[str, int], dict[str, float] | None] = {}

    async def get(self, profile: EquipmentProfile) -> tuple[int, FeatureSpec]:
        """(served version, its feature spec) for the profile's model; `InferenceUnavailable` when
        inference cannot say, or serves a model whose window is not the profile's."""
        name = profile.model_name
        known = self._known.get(name)
        if known is None:
            card = await self._inference.served_card(name)
            # A card from before specs were recorded: the profile's window over raw sensors.
            spec = card.features or FeatureSpec(window=profile.window)
            try:
                spec.check(profile)
            except ValueError as exc:
                raise InferenceUnavailable(f"model {name} v{card.version}: {exc}") from exc
            known = self._known[name] = (card.version, spec)
            self._thresholds[(name, card.version)] = card.alert_thresholds
        return known

    def alert_thresholds(self, name: str, version: int) -> dict[str, float] | None:
        """A version's learnt alert thresholds (an anomaly model's), from its card (None: none learnt,
        or a version this host never fetched)."""
        return self._thresholds.get((name, version))

    def forget(self, name: str, version: int) -> None:
        """`version` is no longer served: the next `get` asks inference again."""
        if name in self._known and self._known[name][0] == version:
            del self._known[name]


@dataclass
class ActorDeps:
    inference: InferenceClient
    publisher: Publisher
    settings: EquipmentSettings
    # When this actor host started (epoch seconds): silence is measured from it at the earliest, since
    # the platform could not hear any machine before.
    started_at: float
    specs: ServedSpecs = field(init=False)

    def __post_init__(self) -> None:
        self.specs = ServedSpecs(self.inference)
