"""The replicas' input counts in the state store (`modelstore`, beside the registry's records):

    models/<name>/v/<version>/inputs   every replica's counts of the version's inputs (inputs.Record)

Written by an etag-guarded merge (apps/common/statecas.py), each write with a TTL: a version nobody
predicts with any more expires once its counts are out of every answer.
"""

from __future__ import annotations

from collections.abc import Callable

from dapr.aio.clients import DaprClient

from apps.common.names import MODEL_STORE
from apps.common.statecas import update_state


def inputs_key(model: str, version: int) -> str:
    return f"models/{model}/v/{version}/inputs"


class DaprInputStore:
    """service.InputStore on the Dapr state API."""

    def __init__(self, client: DaprClient, store: str = MODEL_STORE) -> None:
        self.client = client
        self.store = store

    async def read(self, model: str, version: int) -> bytes | None:
        got = await self.client.get_state(self.store, inputs_key(model, version))
        return got.data or None

    async def update(
        self, model: str, version: int, change: Callable[[bytes | None], str], ttl_seconds: int
    ) -> None:
        await update_state(
            self.client, self.store, inputs_key(model, version), change, ttl_seconds=ttl_seconds
        )
