"""What the EquipmentActor needs from the outside, as small interfaces with Dapr implementations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from dapr.aio.clients import DaprClient

from apps.common.contracts import FeatureVector, PredictRequest, PredictResponse
from apps.common.names import INFERENCE_APP_ID
from apps.common.publisher import Publisher
from apps.equipment.settings import EquipmentSettings


class InferenceUnavailable(Exception):
    """Inference could not answer (down, slow, no model yet); the actor marks its prediction stale."""


class InferenceClient(Protocol):
    async def predict(self, model_name: str, features: list[FeatureVector]) -> PredictResponse: ...


class DaprInferenceClient:
    """Calls `inference` by Dapr service invocation (the sidecar applies the resiliency policy)."""

    def __init__(self, client: DaprClient) -> None:
        self.client = client

    async def predict(self, model_name: str, features: list[FeatureVector]) -> PredictResponse:
        request = PredictRequest(
            model_name=model_name,
            feature_names=features[0].feature_names,
            rows=[f.values for f in features],
        )
        try:
            resp = await self.client.invoke_method(
                INFERENCE_APP_ID,
                "v1/predict",
                data=request.model_dump_json(),
                http_verb="POST",
                content_type="application/json",
            )
            return PredictResponse.model_validate_json(resp.data)
        except Exception as exc:  # any failure of the call is "unavailable" to the actor
            raise InferenceUnavailable(str(exc) or type(exc).__name__) from exc


@dataclass
class ActorDeps:
    inference: InferenceClient
    publisher: Publisher
    settings: EquipmentSettings
    # When this actor host started (epoch seconds): silence is measured from it at the earliest, since
    # the platform could not hear any machine before.
    started_at: float
