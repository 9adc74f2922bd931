"""Parse the resource YAML files daprd reads: Component, Subscription, Configuration, Resiliency.

A file localdapr cannot use stops the start with a ComponentError naming the file and the field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from localdapr.errors import ComponentError


@dataclass(slots=True)
class MetadataEntry:
    name: str
    value: str | None = None
    secret_ref: tuple[str, str | None] | None = None  # (secret name, key)
    env_ref: str | None = None


@dataclass(slots=True)
class ComponentSpec:
    name: str
    type: str
    version: str
    entries: list[MetadataEntry]
    scopes: list[str]
    secret_store: str | None
    file: Path
    ignore_errors: bool = False
    # Resolved metadata (values, secretKeyRef and envRef applied); filled by the loader.
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def building_block(self) -> str:
        return self.type.split(".", 1)[0]

    def applies_to(self, app_id: str) -> bool:
        return not self.scopes or app_id in self.scopes

    def require(self, key: str) -> str:
        value = self.metadata.get(key, "")
        if value == "":
            raise ComponentError(
                f"{self.file}: component {self.name!r} ({self.type}): required metadata field "
                f"{key!r} is missing"
            )
        return value

    def get(self, key: str, default: str = "") -> str:
        return self.metadata.get(key, default) or default

    def get_int(self, key: str, default: int, minimum: int | None = None) -> int:
        raw = self.get(key, str(default))
        try:
            value = int(raw)
        except ValueError:
            raise self.fail(f"metadata field {key!r} must be an integer, got {raw!r}") from None
        if minimum is not None and value < minimum:
            raise self.fail(f"metadata field {key!r} must be at least {minimum}, got {value}")
        return value

    def get_bool(self, key: str, default: bool = False) -> bool:
        raw = self.metadata.get(key)
        if raw is None or raw == "":
            return default
        if raw.lower() in ("true", "1", "t", "yes"):
            return True
        if raw.lower() in ("false", "0", "f", "no"):
            return False
        raise ComponentError(
            f"{self.file}: component {self.name!r}: metadata field {key!r} must be a boolean, got {raw!r}"
        )

    def fail(self, message: str) -> ComponentError:
        return ComponentError(f"{self.file}: component {self.name!r} ({self.type}): {message}")


@dataclass(slots=True)
class RouteRule:
    match: str
    path: str


# daprd's defaults for a bulk subscription that names no limits (pkg/runtime/pubsub default bulk subscriber).
BULK_DEFAULT_MAX_MESSAGES = 100
BULK_DEFAULT_MAX_AWAIT_MS = 1000


@dataclass(slots=True, frozen=True)
class BulkSubscribe:
    """A subscription's `bulkSubscribe`: deliver up to `max_messages` events in one call to the app, or
    what arrived within `max_await_ms` of the first one."""

    max_messages: int = BULK_DEFAULT_MAX_MESSAGES
    max_await_ms: int = BULK_DEFAULT_MAX_AWAIT_MS


def parse_bulk_subscribe(raw: Any, where: str) -> BulkSubscribe | None:
    """`bulkSubscribe: {enabled, maxMessagesCount, maxAwaitDurationMs}`; None when absent or disabled.

    Raises ValueError naming `where` for a value daprd could not read either (not a mapping, a count
    or duration that is not a positive integer)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: bulkSubscribe must be a mapping, got {type(raw).__name__}")
    enabled = raw.get("enabled", False)
    if isinstance(enabled, str):
        enabled = enabled.strip().lower() == "true"
    if not enabled:
        return None

    def positive(key: str, default: int) -> int:
        value = raw.get(key)
        if value in (None, "", 0, "0"):
            return default  # daprd uses its default for an unset (zero) limit
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: bulkSubscribe.{key} must be an integer, got {value!r}") from None
        if number < 1:
            raise ValueError(f"{where}: bulkSubscribe.{key} must be positive, got {number}")
        return number

    return BulkSubscribe(
        max_messages=positive("maxMessagesCount", BULK_DEFAULT_MAX_MESSAGES),
        max_await_ms=positive("maxAwaitDurationMs", BULK_DEFAULT_MAX_AWAIT_MS),
    )


@dataclass(slots=True)
class SubscriptionSpec:
    pubsub_name: str
    topic: str
    default_route: str | None
    rules: list[RouteRule] = field(default_factory=list)
    dead_letter_topic: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    scopes: list[str] = field(default_factory=list)
    source: str = "programmatic"  # or the declarative file's path
    bulk: BulkSubscribe | None = None  # bulkSubscribe enabled: deliver in batches

    def applies_to(self, app_id: str) -> bool:
        return not self.scopes or app_id in self.scopes


@dataclass(slots=True)
class Resources:
    """Everything loaded from one or more resources folders."""

    components: list[ComponentSpec] = field(default_factory=list)
    subscriptions: list[SubscriptionSpec] = field(default_factory=list)
    resiliency: list[dict[str, Any]] = field(default_factory=list)


def _str_value(value: Any) -> str:
    # Component metadata values may be strings, numbers or booleans in YAML; daprd keeps them as text.
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _parse_component(doc: dict[str, Any], file: Path) -> ComponentSpec:
    meta = doc.get("metadata") or {}
    name = meta.get("name")
    if not name:
        raise ComponentError(f"{file}: Component has no metadata.name")
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        raise ComponentError(f"{file}: component {name!r}: missing spec")
    ctype = spec.get("type")
    if not ctype or not isinstance(ctype, str) or "." not in ctype:
        raise ComponentError(f"{file}: component {name!r}: spec.type is missing or not like 'state.redis'")
    # daprd treats a missing spec.version as the component's initial version (see factory.py).
    version = spec.get("version") or ""
    entries: list[MetadataEntry] = []
    raw_entries = spec.get("metadata")
    if raw_entries is None:
        raw_entries = []
    if not isinstance(raw_entries, list):
        raise ComponentError(f"{file}: component {name!r}: spec.metadata must be a list of name/value")
    for i, raw in enumerate(raw_entries):
        if not isinstance(raw, dict) or not raw.get("name"):
            raise ComponentError(f"{file}: component {name!r}: spec.metadata[{i}] has no name")
        entry = MetadataEntry(name=str(raw["name"]))
        if "secretKeyRef" in raw:
            ref = raw["secretKeyRef"] or {}
            if not ref.get("name"):
                raise ComponentError(
                    f"{file}: component {name!r}: spec.metadata[{i}] ({entry.name}) secretKeyRef has no name"
                )
            entry.secret_ref = (str(ref["name"]), str(ref["key"]) if ref.get("key") else None)
        elif "envRef" in raw:
            entry.env_ref = str(raw["envRef"])
        else:
            entry.value = _str_value(raw.get("value"))
        entries.append(entry)
    auth = doc.get("auth") or {}
    # daprd's Go JSON decoding is case-insensitive: docs show `secretstore`, the type says `secretStore`.
    secret_store = next((v for k, v in auth.items() if k.lower() == "secretstore"), None)
    scopes = doc.get("scopes") or []
    if not isinstance(scopes, list):
        raise ComponentError(f"{file}: component {name!r}: scopes must be a list of app ids")
    return ComponentSpec(
        name=str(name),
        type=ctype,
        version=str(version),
        entries=entries,
        scopes=[str(s) for s in scopes],
        secret_store=str(secret_store) if secret_store else None,
        file=file,
        ignore_errors=bool(spec.get("ignoreErrors", False)),
    )


def _parse_subscription(doc: dict[str, Any], file: Path) -> SubscriptionSpec:
    name = (doc.get("metadata") or {}).get("name", "?")
    spec = doc.get("spec") or {}
    for key in ("pubsubname", "topic"):
        if not spec.get(key):
            raise ComponentError(f"{file}: subscription {name!r}: spec.{key} is required")
    routes = spec.get("routes") or {}
    rules = [RouteRule(match=str(r["match"]), path=str(r["path"])) for r in routes.get("rules") or []]
    default = routes.get("default") or spec.get("route")
    if not default and not rules:
        raise ComponentError(f"{file}: subscription {name!r}: needs spec.routes (or spec.route for v1alpha1)")
    try:
        bulk = parse_bulk_subscribe(spec.get("bulkSubscribe"), f"{file}: subscription {name!r}")
    except ValueError as exc:
        raise ComponentError(str(exc)) from exc
    return SubscriptionSpec(
        pubsub_name=str(spec["pubsubname"]),
        topic=str(spec["topic"]),
        default_route=str(default) if default else None,
        rules=rules,
        dead_letter_topic=spec.get("deadLetterTopic") or None,
        metadata={str(k): _str_value(v) for k, v in (spec.get("metadata") or {}).items()},
        scopes=[str(s) for s in doc.get("scopes") or []],
        source=str(file),
        bulk=bulk,
    )


def default_resources_path() -> Path:
    """The folder `dapr run` loads when given no resources path: the components that `dapr init` writes.

    The Dapr CLI's runtime folder is $DAPR_RUNTIME_PATH/.dapr when that is set, else ~/.dapr.
    """
    runtime = os.environ.get("DAPR_RUNTIME_PATH", "").strip()
    return (Path(runtime) if runtime else Path.home()) / ".dapr" / "components"


def load_resources(paths: list[Path]) -> Resources:
    """Read every *.yaml / *.yml file in the given folders (not recursive, as daprd)."""
    resources = Resources()
    for folder in paths:
        if not folder.is_dir():
            hint = ""
            if folder == default_resources_path():
                hint = " (the default without a resources path, as for `dapr run`; `dapr init` creates it)"
            raise ComponentError(f"{folder}: resources path does not exist or is not a folder{hint}")
        for file in sorted(folder.iterdir()):
            if file.suffix not in (".yaml", ".yml") or not file.is_file():
                continue
            try:
                docs = [d for d in yaml.safe_load_all(file.read_text()) if d]
            except yaml.YAMLError as exc:
                raise ComponentError(f"{file}: not valid YAML: {exc}") from exc
            for doc in docs:
                if not isinstance(doc, dict):
                    raise ComponentError(f"{file}: expected a mapping with apiVersion and kind")
                kind = doc.get("kind")
                if kind == "Component":
                    resources.components.append(_parse_component(doc, file))
                elif kind == "Subscription":
                    resources.subscriptions.append(_parse_subscription(doc, file))
                elif kind == "Resiliency":
                    resources.resiliency.append(doc)
                elif kind in ("Configuration", "HTTPEndpoint"):
                    continue  # Configuration comes from --config; HTTPEndpoint is not supported (documented)
                else:
                    raise ComponentError(f"{file}: unknown kind {kind!r}")
    names: dict[str, Path] = {}
    for comp in resources.components:
        if comp.name in names:
            raise ComponentError(
                f"{comp.file}: component name {comp.name!r} is already defined in {names[comp.name]}"
            )
        names[comp.name] = comp.file
    return resources


@dataclass(slots=True)
class Configuration:
    """The parts of a Dapr Configuration resource localdapr applies."""

    name: str = "default"
    features: dict[str, bool] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def feature(self, name: str) -> bool:
        return self.features.get(name, False)


def load_configuration(file: Path | None) -> Configuration:
    if file is None:
        return Configuration()
    if not file.is_file():
        raise ComponentError(f"{file}: configuration file does not exist")
    try:
        doc = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ComponentError(f"{file}: not valid YAML: {exc}") from exc
    if doc.get("kind") != "Configuration":
        raise ComponentError(f"{file}: kind must be Configuration, got {doc.get('kind')!r}")
    spec = doc.get("spec") or {}
    features = {str(f["name"]): bool(f.get("enabled", False)) for f in spec.get("features") or []}
    return Configuration(name=(doc.get("metadata") or {}).get("name", "default"), features=features, raw=spec)
