"""In-memory stand-ins for the model registry, the archive and the publisher the training service uses."""

from __future__ import annotations

import json
from typing import Any

from apps.common.archive import Block
from apps.common.archivestore import ArchiveRead
from apps.common.contracts import EquipmentEvent, ModelCard
from apps.common.registry import ModelVersion


class MemoryRegistry:
    """DaprModelRegistry's calls over dicts (one model)."""

    def __init__(self) -> None:
        self.models: dict[int, ModelVersion] = {}
        self.champion: int | None = None
        self.decisions_: dict[int, dict[str, Any]] = {}
        self.seen: dict[int, list[str]] = {}
        self.history: list[dict[str, Any]] = []
        self.drift_: str | None = None

    async def next_version(self, name: str) -> int:
        return len(self.models) + 1

    async def register(self, card: ModelCard, onnx: bytes) -> int:
        self.models[card.version] = ModelVersion(card, onnx)
        return card.version

    async def champion_version(self, name: str) -> int | None:
        return self.champion

    async def get(self, name: str, version: int) -> ModelVersion | None:
        return self.models.get(version)

    async def card(self, name: str, version: int) -> ModelCard | None:
        found = self.models.get(version)
        return None if found is None else found.card

    async def versions(self, name: str) -> list[ModelCard]:
        return [self.models[v].card for v in sorted(self.models)]

    async def set_champion(self, name: str, version: int, change: dict[str, Any]) -> None:
        self.champion = version
        self.history.append(json.loads(json.dumps(change)))

    async def champion_history(self, name: str) -> list[dict[str, Any]]:
        return list(self.history)

    async def record_decision(self, name: str, version: int, decision_json: str) -> None:
        self.decisions_[version] = json.loads(decision_json)

    async def decisions(self, name: str) -> list[str]:
        return [json.dumps(self.decisions_[v]) for v in sorted(self.decisions_)]

    async def record_runs(self, name: str, version: int, runs: list[str]) -> None:
        self.seen[version] = runs

    async def runs(self, name: str, version: int) -> list[str] | None:
        return self.seen.get(version)

    async def save_drift(self, name: str, report_json: str) -> None:
        self.drift_ = report_json

    async def drift(self, name: str) -> str | None:
        return self.drift_


class MemoryArchive:
    def __init__(self) -> None:
        self.histories: dict[str, Block] = {}
        self.events: list[EquipmentEvent] = []

    async def read(self) -> ArchiveRead:
        return ArchiveRead(histories=dict(self.histories), events=list(self.events))


class Published:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    async def publish(self, topic: str, event: Any) -> None:
        self.events.append((topic, event))


class ModelRegistries:
    """DaprModelRegistry's calls for several models: one MemoryRegistry per model name."""

    def __init__(self) -> None:
        self.by_name: dict[str, MemoryRegistry] = {}

    def of(self, name: str) -> MemoryRegistry:
        return self.by_name.setdefault(name, MemoryRegistry())

    async def register(self, card: ModelCard, onnx: bytes) -> int:
        return await self.of(card.name).register(card, onnx)

    def __getattr__(self, attr: str) -> Any:
        # every other call names the model first
        async def call(name: str, *args: Any) -> Any:
            return await getattr(self.of(name), attr)(name, *args)

        return call
