"""The app's actor configuration, from its `GET /dapr/config` answer (contract 3.5).

daprd reads `entities`, `actorIdleTimeout`, `drainOngoingCallTimeout`, `drainRebalancedActors`,
`reentrancy` and per-type `entitiesConfig` overrides. localdapr also honours `actorScanInterval`
(daprd 1.18 no longer reads it), because tests want short idle checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from localdapr.actors.schedule import parse_duration

DEFAULT_IDLE_TIMEOUT = 3600.0
DEFAULT_SCAN_INTERVAL = 30.0
DEFAULT_DRAIN_TIMEOUT = 60.0
DEFAULT_MAX_STACK_DEPTH = 32


@dataclass(slots=True)
class TypeConfig:
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT
    drain_ongoing_call_timeout: float = DEFAULT_DRAIN_TIMEOUT
    drain_rebalanced_actors: bool = True
    reentrancy: bool = False
    max_stack_depth: int = DEFAULT_MAX_STACK_DEPTH


@dataclass(slots=True)
class ActorConfig:
    entities: list[str] = field(default_factory=list)
    scan_interval: float = DEFAULT_SCAN_INTERVAL
    default: TypeConfig = field(default_factory=TypeConfig)
    per_type: dict[str, TypeConfig] = field(default_factory=dict)

    def for_type(self, actor_type: str) -> TypeConfig:
        return self.per_type.get(actor_type, self.default)

    @classmethod
    def from_json(cls, doc: Any) -> ActorConfig:
        if not isinstance(doc, dict):
            raise ValueError(f"/dapr/config must answer a JSON object, got {type(doc).__name__}")
        entities = [str(e) for e in doc.get("entities") or []]
        default = _apply(TypeConfig(), doc, "/dapr/config")
        per_type: dict[str, TypeConfig] = {}
        for i, override in enumerate(doc.get("entitiesConfig") or []):
            if not isinstance(override, dict):
                continue
            cfg = _apply(replace(default), override, f"/dapr/config entitiesConfig[{i}]")
            for entity in override.get("entities") or []:
                per_type[str(entity)] = cfg
        scan = doc.get("actorScanInterval")
        return cls(
            entities=entities,
            scan_interval=_seconds(scan, "actorScanInterval") if scan else DEFAULT_SCAN_INTERVAL,
            default=default,
            per_type=per_type,
        )


def _seconds(value: Any, field_name: str) -> float:
    if isinstance(value, int | float):
        return float(value)  # never sent by the SDK, but a number of seconds is unambiguous
    return parse_duration(str(value), field_name)


def _apply(cfg: TypeConfig, doc: dict[str, Any], where: str) -> TypeConfig:
    try:
        if doc.get("actorIdleTimeout"):
            cfg.idle_timeout = _seconds(doc["actorIdleTimeout"], "actorIdleTimeout")
        if doc.get("drainOngoingCallTimeout"):
            cfg.drain_ongoing_call_timeout = _seconds(
                doc["drainOngoingCallTimeout"], "drainOngoingCallTimeout"
            )
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    if "drainRebalancedActors" in doc:
        cfg.drain_rebalanced_actors = bool(doc["drainRebalancedActors"])
    reentrancy = doc.get("reentrancy")
    if isinstance(reentrancy, dict):
        cfg.reentrancy = bool(reentrancy.get("enabled"))
        if reentrancy.get("maxStackDepth"):
            cfg.max_stack_depth = int(reentrancy["maxStackDepth"])
    return cfg
