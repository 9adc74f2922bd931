"""What inference was fed, asked of inference: its counts of the rows each served version predicted, in
the version's reference bins (`GET /v1/models/{name}/inputs`, by Dapr service invocation; the access
policy lets training call that route and nothing else of inference). Training's drift measures them."""

from __future__ import annotations

import logging
from typing import Protocol

import aiohttp
from dapr.clients.exceptions import DaprHttpError
from pydantic import ValidationError

from apps.common.daprhttp import close_pooled, pooled_invocation_client
from apps.common.names import INFERENCE_APP_ID
from apps.common.registry import InputCounts

log = logging.getLogger("training")


class InputsUnavailable(Exception):
    """Inference has no counts to give (not serving the model, no reference, away); says why."""


class InferenceInputs(Protocol):
    async def counts(self, name: str) -> InputCounts:
        """Inference's counts for model `name`; InputsUnavailable with the reason when there are none."""
        ...


class DaprInferenceInputs:
    """InferenceInputs over Dapr HTTP service invocation (a callee's 4xx arrives with its status)."""

    def __init__(self, timeout_seconds: int = 10) -> None:
        self.invoker = pooled_invocation_client(timeout_seconds)

    async def counts(self, name: str) -> InputCounts:
        path = f"v1/models/{name}/inputs"
        try:
            answer = await self.invoker.invoke_method_async(INFERENCE_APP_ID, path, b"", http_verb="GET")
            return InputCounts.model_validate_json(bytes(answer.data))
        except DaprHttpError as exc:
            # the callee's own answer (its JSON detail) if it gave one, else the sidecar's error
            detail = (exc.raw_response_bytes or b"").decode(errors="replace")[:300] or exc.message
            raise InputsUnavailable(f"{INFERENCE_APP_ID} answered {exc.status_code}: {detail}") from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise InputsUnavailable(
                f"{INFERENCE_APP_ID} did not answer: {exc or type(exc).__name__}"
            ) from None
        except ValidationError as exc:
            raise InputsUnavailable(f"{INFERENCE_APP_ID} answered counts not understood: {exc}") from None

    async def close(self) -> None:
        await close_pooled(self.invoker)
