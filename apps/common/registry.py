"""The model registry: ONNX versions, their model cards and a champion pointer, in a Dapr state store.

Training writes and inference reads the same keys (the `modelstore` component has `keyPrefix: name`,
so the app id is not part of the key). The key layout is therefore a contract between the two
services, and lives here, once:

    models/<name>/next-version           the last version number handed out (etag-guarded)
    models/<name>/v/<version>/onnx       the ONNX bytes
    models/<name>/v/<version>/card       the ModelCard JSON
    models/<name>/v/<version>/signature  training's signature of the version's card and ONNX bytes
    models/<name>/champion               {"version": N, "serial": S, "signature": ...}: what inference serves
    models/<name>/v/<version>/decision   the promotion gate's decision on the version, with its numbers
    models/<name>/v/<version>/runs       the labelled runs (keys) the version was trained on
    models/<name>/champion-history       every change of champion: gate, promote, rollback (JSON list)
    models/<name>/drift                  the last feature drift report of the champion
    models/<name>/v/<version>/inputs     inference's counts of the version's inputs, every replica's
                                         (written by inference: apps/inference/inputstore.py)

(Training also keeps its job records in this store, under `jobs/`: apps/training/jobstore.py.)
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from dapr.aio.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError, DaprInternalError
from dapr.clients.grpc._request import TransactionalStateOperation
from pydantic import BaseModel, ConfigDict, Field

from apps.common.contracts import ModelCard
from apps.common.names import MODEL_STORE
from apps.common.signing import (
    ForgedRecord,
    RecordSigner,
    RecordVerifier,
    champion_payload,
    version_payload,
)
from apps.common.statecas import StateContention, update_state


def _key(name: str, *parts: object) -> str:
    return "/".join(["models", name, *(str(p) for p in parts)])


@dataclass(frozen=True, slots=True)
class ModelVersion:
    card: ModelCard
    onnx: bytes


class ModelRegistry(Protocol):
    async def register(self, card: ModelCard, onnx: bytes) -> int: ...
    async def promote(self, name: str, version: int) -> None: ...
    async def champion_version(self, name: str) -> int | None: ...
    async def versions(self, name: str) -> list[ModelCard]:
        """Every registered version's card, oldest first, in one bulk read (a version number handed
        out to a training run that never registered is skipped)."""
        last = await self.client.get_state(self.store, _key(name, "next-version"))
        count = int(last.data or b"0")
        if count == 0:
            return []
        keys = [_key(name, "v", v, "card") for v in range(1, count + 1)]
        got = await self.client.get_bulk_state(self.store, keys, parallelism=4)
        cards = [ModelCard.model_validate_json(item.data) for item in got.items if item.data]
        return sorted(cards, key=lambda c: c.version)

    async def get(self, name: str, version: int) -> ModelVersion | None: ...
    async def card(self, name: str, version: int) -> ModelCard | None: ...


class DaprModelRegistry:
    """ModelRegistry on the Dapr state API (works with any transactional store behind `modelstore`).

    With a `signer` (training), every version registered and every champion pointer written is signed
    (apps/common/signing.py). With a `verifier` (inference), `champion_version` and `get` raise
    ForgedRecord for a record whose signature does not verify, and for a champion pointer whose serial is
    below one already seen (an old, genuinely signed pointer written back)."""

    def __init__(
        self,
        client: DaprClient,
        store: str = MODEL_STORE,
        signer: RecordSigner | None = None,
        verifier: RecordVerifier | None = None,
    ) -> None:
        self.client = client
        self.store = store
        self.signer = signer
        self.verifier = verifier
        self._serials: dict[str, int] = {}

    async def next_version(self, name: str) -> int:
        """Hand out a version number; concurrent trainers never get the same one (etag retry)."""
        handed: list[int] = []

        def bump(current: bytes | None) -> str:
            handed.append(int(current or b"0") + 1)  # the last call is the one written
            return str(handed[-1])

        try:
            await update_state(self.client, self.store, _key(name, "next-version"), bump)
        except StateContention as exc:
            raise RuntimeError(
                f"could not allocate a version for model {name!r}: too much contention"
            ) from exc
        return handed[-1]

    async def register(self, card: ModelCard, onnx: bytes) -> int:
        """Store the ONNX bytes, card (and signature) of `card.version` in one transaction."""
        card_json = card.model_dump_json()
        operations = [
            TransactionalStateOperation(key=_key(card.name, "v", card.version, "onnx"), data=onnx),
            TransactionalStateOperation(key=_key(card.name, "v", card.version, "card"), data=card_json),
        ]
        if self.signer is not None:
            payload = version_payload(card.name, card.version, card_json.encode(), onnx)
            operations.append(
                TransactionalStateOperation(
                    key=_key(card.name, "v", card.version, "signature"), data=self.signer.sign(payload)
                )
            )
        await self.client.execute_state_transaction(self.store, operations)
        return card.version

    def _pointer(self, name: str, version: int) -> str:
        if self.signer is None:
            return json.dumps({"version": version})
        # Nanoseconds: a later pointer of any training replica has a larger serial (clocks in step).
        serial = time.time_ns()
        signature = self.signer.sign(champion_payload(name, version, serial))
        return json.dumps({"version": version, "serial": serial, "signature": signature})

    async def promote(self, name: str, version: int) -> None:
        await self.client.save_state(self.store, _key(name, "champion"), self._pointer(name, version))

    async def record_decision(self, name: str, version: int, decision_json: str) -> None:
        """The promotion gate's decision on a version, with its numbers (kept beside its card)."""
        await self.client.save_state(self.store, _key(name, "v", version, "decision"), decision_json)

    async def decisions(self, name: str) -> list[str]:
        """The gate's decisions (JSON) on every version, oldest version first, in one bulk read."""
        return [item for _, item in await self._per_version(name, "decision")]

    async def record_runs(self, name: str, version: int, runs: list[str]) -> None:
        await self.client.save_state(self.store, _key(name, "v", version, "runs"), json.dumps(sorted(runs)))

    async def runs(self, name: str, version: int) -> list[str] | None:
        """The run keys `version` was trained on; None when not recorded (trained on a dataset file)."""
        got = await self.client.get_state(self.store, _key(name, "v", version, "runs"))
        return [str(k) for k in json.loads(got.data)] if got.data else None

    async def champion_history(self, name: str) -> list[dict[str, object]]:
        got = await self.client.get_state(self.store, _key(name, "champion-history"))
        return list(json.loads(got.data)) if got.data else []

    async def set_champion(self, name: str, version: int, change: dict[str, object]) -> None:
        """Make `version` champion and append `change` to the champion history, in one transaction
        (etag-guarded: two concurrent changes cannot lose one another's entry)."""
        for _ in range(20):
            got = await self.client.get_state(self.store, _key(name, "champion-history"))
            history = [*(json.loads(got.data) if got.data else []), change]
            try:
                await self.client.execute_state_transaction(
                    self.store,
                    [
                        TransactionalStateOperation(
                            key=_key(name, "champion-history"),
                            data=json.dumps(history),
                            etag=got.etag or None,
                        ),
                        TransactionalStateOperation(
                            key=_key(name, "champion"), data=self._pointer(name, version)
                        ),
                    ],
                )
                return
            except (DaprGrpcError, DaprInternalError):
                continue  # somebody changed the history meanwhile: read it again
        raise RuntimeError(f"could not change the champion of {name!r}: too much contention")

    async def save_drift(self, name: str, report_json: str) -> None:
        await self.client.save_state(self.store, _key(name, "drift"), report_json)

    async def drift(self, name: str) -> str | None:
        got = await self.client.get_state(self.store, _key(name, "drift"))
        return got.data.decode() if got.data else None

    async def _per_version(self, name: str, leaf: str) -> list[tuple[int, str]]:
        last = await self.client.get_state(self.store, _key(name, "next-version"))
        count = int(last.data or b"0")
        if count == 0:
            return []
        keys = {_key(name, "v", v, leaf): v for v in range(1, count + 1)}
        got = await self.client.get_bulk_state(self.store, list(keys), parallelism=4)
        found = [(keys[item.key], bytes(item.data).decode()) for item in got.items if item.data]
        return sorted(found)

    async def champion_version(self, name: str) -> int | None:
        got = await self.client.get_state(self.store, _key(name, "champion"))
        if not got.data:
            return None
        try:
            pointer = json.loads(got.data)
            version = int(pointer["version"])
        except (ValueError, TypeError, KeyError) as exc:
            if self.verifier is not None:
                raise ForgedRecord(f"the champion pointer of {name} is malformed") from exc
            raise
        if self.verifier is None:
            return version
        serial = pointer.get("serial")
        if not isinstance(serial, int):
            raise ForgedRecord(f"the champion pointer of {name} (v{version}) is not signed")
        self.verifier.verify(
            champion_payload(name, version, serial),
            pointer.get("signature"),
            f"the champion pointer of {name} (v{version})",
        )
        if serial < self._serials.get(name, 0):
            raise ForgedRecord(
                f"the champion pointer of {name} (v{version}) is older than one already served: replayed"
            )
        self._serials[name] = serial
        return version

    async def signed_champion(self, name: str) -> int | None:
        """The champion if its pointer verifies under this registry's own key (training: its signer's
        public key); None when there is none or it does not verify (a registry from before signing, or
        a forged pointer), so training makes a signed one."""
        verifier = self.verifier or (self.signer.verifier() if self.signer is not None else None)
        if verifier is None:
            return await self.champion_version(name)
        checking = DaprModelRegistry(self.client, self.store, verifier=verifier)
        try:
            return await checking.champion_version(name)
        except ForgedRecord:
            return None

    async def card(self, name: str, version: int) -> ModelCard | None:
        got = await self.client.get_state(self.store, _key(name, "v", version, "card"))
        return ModelCard.model_validate_json(got.data) if got.data else None

    async def versions(self, name: str) -> list[ModelCard]:
        """Every registered version's card, oldest first, in one bulk read (a version number handed
        out to a training run that never registered is skipped)."""
        last = await self.client.get_state(self.store, _key(name, "next-version"))
        count = int(last.data or b"0")
        if count == 0:
            return []
        keys = [_key(name, "v", v, "card") for v in range(1, count + 1)]
        got = await self.client.get_bulk_state(self.store, keys, parallelism=4)
        cards = [ModelCard.model_validate_json(item.data) for item in got.items if item.data]
        return sorted(cards, key=lambda c: c.version)

    async def get(self, name: str, version: int) -> ModelVersion | None:
        """A version's card and ONNX bytes; with a verifier, only if its signature covers both."""
        keys = [_key(name, "v", version, leaf) for leaf in ("card", "onnx", "signature")]
        bulk = await self.client.get_bulk_state(self.store, keys)
        got = {item.key: bytes(item.data) for item in bulk.items}
        card_json, onnx = got.get(keys[0]), got.get(keys[1])
        if not card_json or not onnx:
            return None
        if self.verifier is not None:
            signature = got.get(keys[2]) or b""
            self.verifier.verify(
                version_payload(name, version, card_json, onnx), signature.decode(), f"{name} v{version}"
            )
        card = ModelCard.model_validate_json(card_json)
        if self.verifier is not None and (card.name, card.version) != (name, version):
            raise ForgedRecord(f"{name} v{version}: its card names {card.name} v{card.version}")
        return ModelVersion(card, onnx)


DriftLevel = Literal["stable", "moderate", "significant"]


class FeatureDrift(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    psi: float = Field(description="Population stability index against the training reference.")
    level: DriftLevel


DriftSource = Literal["inference", "archive"]


class DriftReport(BaseModel):
    """Feature drift of a model version (apps/training/drift.py): over the rows inference predicted with
    it (`source` inference: its counts in the reference bins), or, when inference has too few, over the
    fleet's recent readings in the archive (`source` archive, `fallback` says why)."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model: str
    version: int
    computed_at: datetime
    source: DriftSource = Field("archive", description="Whose rows: inference's inputs, or the archive's.")
    rows: int = Field(description="Recent feature rows compared with the training reference.")
    machines: int = Field(description="Running machines whose readings were read (archive); 0 for inference.")
    since: datetime | None = Field(None, description="Inference's rows were counted since then.")
    fallback: str | None = Field(None, description="Why the archive was read instead of inference's counts.")
    max_psi: float
    level: DriftLevel
    features: list[FeatureDrift] = Field(description="Highest PSI first.")
    ignored: list[str] = Field(
        default_factory=list,
        description="Features the model does not use (its card's unused features): not measured.",
    )

    def basis(self) -> str:
        """What the PSI was measured over, in words."""
        if self.source == "inference":
            since = f" since {self.since:%Y-%m-%d %H:%M} UTC" if self.since else ""
            return f"{self.rows} rows inference predicted{since}"
        return f"{self.rows} rows of {self.machines} machines in the archive"


class FeatureCounts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    edges: list[float] = Field(description="The card's reference bin edges (inner edges, ascending).")
    counts: list[int] = Field(description="Rows per bin: (-inf, e0], (e0, e1], ..., (e_last, inf).")


class InputCounts(BaseModel):
    """What inference predicted with a served version, counted in its card's reference bins per feature
    (inference's `GET /v1/models/{name}/inputs`; training's drift reads it)."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model: str
    version: int
    since: datetime = Field(description="Counted since then (a window start, or when the version began).")
    rows: int = Field(ge=0)
    features: list[FeatureCounts] = Field(description="In the card's feature_reference order.")


class RegisteredModel(BaseModel):
    """A model of the registry as training's `GET /v1/models` lists it (the dashboard reads it)."""

    model_config = ConfigDict(protected_namespaces=())

    name: str
    champion: int | None = Field(None, description="The version inference is to serve.")
    versions: list[ModelCard] = Field(default_factory=list, description="Oldest first.")
    drift: DriftReport | None = Field(None, description="The champion's feature drift, last measured.")


class ModelUpdate(BaseModel):
    """Announced on the `model-updates` topic when a version is registered (and maybe promoted)."""

    name: str
    version: int
    promoted: bool
