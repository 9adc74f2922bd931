"""Which version serves, and why: one model's view, operator promote and rollback, feature drift.

Every change of champion (the gate's, an operator's promote or rollback) is appended to the model's
champion history in the registry with who, when and why; the gate's decisions keep their numbers beside
each version. Rollback goes back to the version that was champion before the current one was made
champion by the gate or a promote, so rolling back twice walks two steps back, not back and forth.

Drift is measured on what the champion is actually fed: inference's counts of the rows it predicted
with it (apps/training/inputs.py). Only when inference has fewer than `min_inference_rows` of them (just
started, just swapped, not serving the champion, away) are the fleet's recent readings read back from the
archive and turned into the champion's features, and the report says why (`fallback`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from apps.common.contracts import ModelCard
from apps.common.features import FeatureSpec, reading_features
from apps.common.names import TOPIC_MODEL_UPDATES
from apps.common.profiles import EquipmentProfile
from apps.common.publisher import Publisher
from apps.common.registry import DaprModelRegistry, DriftReport, ModelUpdate
from apps.training.drift import counts_report, drift_report, unused_features
from apps.training.history import Life
from apps.training.inputs import InferenceInputs, InputsUnavailable
from apps.training.promotion import GateResult
from apps.training.runs import recent_readings


class UnknownModel(LookupError):
    """404: no such model, or no such version of it."""


class ChampionConflict(RuntimeError):
    """409: the change makes no sense in the model's current state (said in words)."""


class ChampionChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int
    previous: int | None
    action: Literal["gate", "promote", "rollback"]
    by: str
    note: str = ""
    reason: str = ""
    at: datetime


class ChampionRequest(BaseModel):
    """Body of `POST /v1/models/{name}/promote` (`version` required) and `/rollback` (`version`
    optional: default the champion before the current one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: int | None = Field(None, ge=1, le=2**31)
    by: str = Field("", max_length=120)
    note: str = Field("", max_length=500)


class ModelView(BaseModel):
    """`GET /v1/models/{name}`: versions, champion, every decision with its numbers, drift."""

    model_config = ConfigDict(protected_namespaces=())

    name: str
    profile: str | None
    champion: int | None
    versions: list[ModelCard] = Field(description="Oldest first.")
    decisions: list[GateResult] = Field(description="The promotion gate's decision on each version.")
    champion_history: list[ChampionChange] = Field(description="Every change of champion, oldest first.")
    drift: DriftReport | None = Field(None, description="The champion's feature drift, last computed.")


def rollback_target(history: list[ChampionChange], current: int | None) -> int | None:
    """The champion before `current` became it by the gate or a promote (rollbacks are walked past)."""
    for change in reversed(history):
        if change.version == current and change.action != "rollback":
            return change.previous
    return None


Lives = list[Life] | Callable[[], Awaitable[list[Life]]]  # read from the archive only if needed


class ModelCatalog:
    def __init__(
        self,
        registry: DaprModelRegistry,
        publisher: Publisher,
        profiles: dict[str, EquipmentProfile],
        inputs: InferenceInputs | None = None,
        min_inference_rows: int = 100,
    ) -> None:
        self.registry = registry
        self.publisher = publisher
        self.profiles = profiles  # by model name
        self.inputs = inputs  # None: drift from the archive only
        self.min_inference_rows = min_inference_rows

    def _profile(self, name: str) -> EquipmentProfile:
        if name not in self.profiles:
            raise UnknownModel(f"no model {name!r}; known: {', '.join(sorted(self.profiles))}")
        return self.profiles[name]

    async def history(self, name: str) -> list[ChampionChange]:
        return [ChampionChange.model_validate(c) for c in await self.registry.champion_history(name)]

    async def view(self, name: str) -> ModelView:
        profile = self._profile(name)
        drift = await self.registry.drift(name)
        return ModelView(
            name=name,
            profile=profile.name,
            champion=await self.registry.champion_version(name),
            versions=await self.registry.versions(name),
            decisions=[GateResult.model_validate_json(d) for d in await self.registry.decisions(name)],
            champion_history=await self.history(name),
            drift=None if drift is None else DriftReport.model_validate_json(drift),
        )

    async def _change(
        self, name: str, version: int, action: Any, request: ChampionRequest, reason: str
    ) -> ChampionChange:
        previous = await self.registry.champion_version(name)
        if previous == version:
            raise ChampionConflict(f"{name} v{version} is already the champion")
        change = ChampionChange(version=version, previous=previous, action=action, by=request.by or "unknown",
                                note=request.note, reason=reason, at=datetime.now(UTC))  # fmt: skip
        await self.registry.set_champion(name, version, change.model_dump(mode="json"))
        await self.publisher.publish(
            TOPIC_MODEL_UPDATES, ModelUpdate(name=name, version=version, promoted=True)
        )
        return change

    async def _known_version(self, name: str, version: int) -> None:
        if await self.registry.card(name, version) is None:
            versions = [c.version for c in await self.registry.versions(name)]
            known = ", ".join(f"v{v}" for v in versions) if versions else "none yet"
            raise UnknownModel(f"{name} has no version {version} (registered: {known})")

    async def promote(self, name: str, request: ChampionRequest) -> ChampionChange:
        """An operator makes `request.version` champion, whatever the gate said."""
        self._profile(name)
        if request.version is None:
            raise ChampionConflict("promote needs the version to make champion")
        await self._known_version(name, request.version)
        return await self._change(name, request.version, "promote", request, "promoted by an operator")

    async def rollback(self, name: str, request: ChampionRequest) -> ChampionChange:
        """Back to the previous champion (or to `request.version`, which must have been champion)."""
        self._profile(name)
        history = await self.history(name)
        current = await self.registry.champion_version(name)
        target = request.version
        if target is None:
            target = rollback_target(history, current)
            if target is None:
                raise ChampionConflict(
                    f"{name} has no earlier champion to roll back to"
                    + (f" (v{current} was the first)" if current is not None else " (no champion yet)")
                )
        else:
            await self._known_version(name, target)
            if not any(c.version == target for c in history):
                raise ChampionConflict(f"{name} v{target} has never been champion: promote it instead")
        return await self._change(name, target, "rollback", request, f"rolled back from v{current}")

    async def _from_inference(self, card: ModelCard) -> tuple[DriftReport | None, str | None]:
        """The drift of inference's counts, or None and why they cannot be used."""
        if self.inputs is None:
            return None, None
        try:
            counts = await self.inputs.counts(card.name)
        except InputsUnavailable as exc:
            return None, str(exc)
        if counts.version != card.version:
            return None, f"inference counted v{counts.version}, the champion is v{card.version}"
        if counts.rows < self.min_inference_rows:
            return None, (
                f"inference counted {counts.rows} rows of v{card.version} since "
                f"{counts.since:%Y-%m-%d %H:%M} UTC, fewer than {self.min_inference_rows}"
            )
        try:
            refs, now = card.feature_reference, datetime.now(UTC)
            return counts_report(refs, counts, now, ignored=unused_features(card)), None
        except ValueError as exc:
            return None, f"inference's counts do not fit the card: {exc}"

    async def compute_drift(self, name: str, lives: Lives, recent: int) -> DriftReport:
        """The champion's feature drift over what inference fed it; failing that, over the running lives'
        last `recent` readings in the archive (`lives`, read only then if a reader). Kept."""
        profile = self._profile(name)
        champion = await self.registry.champion_version(name)
        card = None if champion is None else await self.registry.card(name, champion)
        if card is None or not card.feature_reference:
            raise ChampionConflict(
                f"{name} has no champion with a training reference to measure drift against"
            )
        report, fallback = await self._from_inference(card)
        if report is not None:
            await self.registry.save_drift(name, report.model_dump_json())
            return report
        if callable(lives):
            lives = await lives()
        # the last `recent` full windows of each running machine: the rows its last predictions used
        tails = recent_readings(lives, profile, recent + profile.window - 1)

        spec = card.features or FeatureSpec(window=profile.window)

        def rows() -> np.ndarray:
            # the champion's own feature spec: drift of what it is fed, not of raw sensors
            parts = [
                reading_features(r, profile, spec, ages, pad=True, head=head)[-recent:]
                for r, ages, head in tails
            ]
            return np.vstack(parts) if parts else np.empty((0, len(card.feature_names)))

        X = await asyncio.to_thread(rows)
        if X.shape[0] == 0:
            raise ChampionConflict(  # (padded windows: any reading of a running machine gives rows)
                f"no running {profile.name} machine in the archive: every life there ended with an event"
                + (f" (and {fallback})" if fallback else "")
            )
        refs, now = card.feature_reference, datetime.now(UTC)
        report = drift_report(
            name, card.version, refs, X, len(tails), now, fallback=fallback, ignored=unused_features(card)
        )
        await self.registry.save_drift(name, report.model_dump_json())
        return report
