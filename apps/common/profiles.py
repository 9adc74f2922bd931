"""Equipment profiles: what a kind of machine reports and how Vigil judges it.

A profile is the single place that says which channels a machine sends (and what values are physically
plausible), which of them feed the model, how long the rolling window is, which model serves it and
when an alert opens or clears. Ingestion validates against it, the EquipmentActor windows and alerts
with it, and training builds features with it, so all three agree by construction.

Profiles are data: one YAML file per kind of machine in the profiles folder (the repo's `profiles/`,
or `$VIGIL_PROFILES_DIR`), validated when loaded, so a new kind needs a file and no code. Every
service loads the same folder, which is why it is one environment variable rather than a setting per
service: ingestion and the actors must never disagree on a profile.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Final, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, StrictStr, Tag, ValidationError

PROFILES_DIR_ENV: Final = "VIGIL_PROFILES_DIR"
ModelKind = Literal["rul", "failure", "anomaly"]


class UnknownProfile(KeyError):
    """Raised when a reading or a caller names a profile Vigil does not ship."""

    def __init__(self, name: str, known: tuple[str, ...]) -> None:
        super().__init__(name)
        self.name = name
        self.known = known

    def __str__(self) -> str:
        return f"unknown equipment profile {self.name!r}; known profiles: {', '.join(self.known)}"


class ProfileError(ValueError):
    """A profile file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True, slots=True)
class AlertThresholds:
    """Hysteresis thresholds on predicted remaining useful life (RUL, in cycles).

    An alert opens after `consecutive` predictions at or below a threshold and clears only after
    `consecutive` predictions above `warning_rul + clear_margin`, so noise around a threshold
    cannot make an alert flap.
    """

    warning_rul: float = 50.0
    critical_rul: float = 20.0
    consecutive: int = 3
    clear_margin: float = 10.0

    def __post_init__(self) -> None:
        if not self.critical_rul < self.warning_rul:
            raise ValueError("critical_rul must be below warning_rul")
        if self.consecutive < 1:
            raise ValueError("consecutive must be >= 1")
        if self.clear_margin < 0:
            raise ValueError("clear_margin must be >= 0")

    @property
    def clear_rul(self) -> float:
        """RUL a prediction must exceed to count towards clearing an open alert."""
        return self.warning_rul + self.clear_margin


@dataclass(frozen=True, slots=True)
class ProbabilityThresholds:
    """Hysteresis thresholds on a failure classifier's probability (higher is worse): the mirror of
    AlertThresholds, clearing only after `consecutive` predictions below `warning_probability -
    clear_margin`."""

    warning_probability: float = 0.5
    critical_probability: float = 0.8
    consecutive: int = 2
    clear_margin: float = 0.2

    def __post_init__(self) -> None:
        if not 0.0 < self.warning_probability < self.critical_probability <= 1.0:
            raise ValueError("need 0 < warning_probability < critical_probability <= 1")
        if self.consecutive < 1:
            raise ValueError("consecutive must be >= 1")
        if not 0.0 <= self.clear_margin < self.warning_probability:
            raise ValueError("clear_margin must be >= 0 and below warning_probability")

    @property
    def clear_probability(self) -> float:
        return self.warning_probability - self.clear_margin


@dataclass(frozen=True, slots=True)
class AnomalyThresholds:
    """Hysteresis on an anomaly model's score (higher is less like healthy early life). The profile
    chooses false-alarm rates; training turns them into score thresholds on held-out healthy data and
    records them in the model card, and the actor takes them from the card of the version it is
    served (`learned`). Until it knows them (`warning_score` None) nothing alerts. An alert opens
    after `consecutive` scores at or above the warning score and clears after `consecutive` below it."""

    false_alarm_rate: float = 0.01
    critical_false_alarm_rate: float = 0.001
    consecutive: int = 5
    warning_score: float | None = None
    critical_score: float | None = None

    def __post_init__(self) -> None:
        if not 0.0 < self.critical_false_alarm_rate < self.false_alarm_rate < 0.5:
            raise ValueError("need 0 < critical_false_alarm_rate < false_alarm_rate < 0.5")
        if self.consecutive < 1:
            raise ValueError("consecutive must be >= 1")
        if (self.warning_score is None) != (self.critical_score is None):
            raise ValueError("warning_score and critical_score are learnt together")
        if self.warning_score is not None and not self.warning_score <= self.critical_score:  # type: ignore[operator]
            raise ValueError("critical_score must be at or above warning_score")

    def learned(self, thresholds: Mapping[str, float] | None) -> AnomalyThresholds:
        """These settings with the score thresholds a model card learnt ({warning, critical})."""
        if not thresholds:
            return replace(self, warning_score=None, critical_score=None)
        return replace(self, warning_score=thresholds["warning"], critical_score=thresholds["critical"])


Thresholds = AlertThresholds | ProbabilityThresholds | AnomalyThresholds
_THRESHOLDS: Final[dict[str, type]] = {
    "rul": AlertThresholds,
    "failure": ProbabilityThresholds,
    "anomaly": AnomalyThresholds,
}


@dataclass(frozen=True, slots=True)
class EquipmentProfile:
    """Schema and judgement rules for one kind of equipment.

    `channels` maps every channel name the machine may report (operating settings and sensors) to
    its plausible (min, max) range; a value outside it is a broken sensor or a unit mix-up, not a
    degradation signal, so ingestion rejects it. `informative_sensors` are the channels the feature
    pipeline uses, in the column order of every window and trajectory array. `thresholds` match
    `model_kind`: AlertThresholds on a predicted RUL, ProbabilityThresholds on a failure probability,
    AnomalyThresholds on an anomaly score.
    """

    name: str
    channels: Mapping[str, tuple[float, float]] = field(hash=False)  # a mapping is unhashable
    informative_sensors: tuple[str, ...]
    operating_settings: tuple[str, ...]
    model_name: str
    window: int = 30
    thresholds: Thresholds = field(default_factory=AlertThresholds)
    silence_after_seconds: float = 300.0
    # Predictions owed (inference unreachable) for this long raise a `stale` alert of their own.
    stale_after_seconds: float = 120.0
    # An alert that cleared and comes back within this many seconds re-opens its episode (one alert
    # for a flapping condition, not one per flap); 0 turns this off.
    reopen_within_seconds: float = 600.0
    model_kind: ModelKind = "rul"
    description: str = ""
    # What each channel measures, in which unit (shown by GET /v1/profiles).
    channel_descriptions: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # Freeze the mappings so a shared module-level profile cannot be mutated by one caller.
        object.__setattr__(self, "channels", MappingProxyType(dict(self.channels)))
        object.__setattr__(self, "channel_descriptions", MappingProxyType(dict(self.channel_descriptions)))
        for channel, (lo, hi) in self.channels.items():
            if not lo < hi:
                raise ValueError(f"channel {channel!r}: range min must be below max")
        missing = [s for s in (*self.informative_sensors, *self.operating_settings) if s not in self.channels]
        if missing:
            raise ValueError(f"profile {self.name!r} references undeclared channels: {missing}")
        if len(set(self.informative_sensors)) != len(self.informative_sensors):
            raise ValueError("informative_sensors must be unique")
        if self.window < 2:
            raise ValueError("window must be >= 2 (a slope needs two points)")
        if self.silence_after_seconds <= 0:
            raise ValueError("silence_after_seconds must be > 0")
        if self.stale_after_seconds <= 0:
            raise ValueError("stale_after_seconds must be > 0")
        if self.reopen_within_seconds < 0:
            raise ValueError("reopen_within_seconds must be >= 0")
        expected = _THRESHOLDS[self.model_kind]
        if not isinstance(self.thresholds, expected):
            raise ValueError(f"a {self.model_kind!r} model needs {expected.__name__}")

    @property
    def required_channels(self) -> tuple[str, ...]:
        """Channels every reading must carry: the ones the features cannot do without (the operating
        settings tell which operating condition normalises the sensors)."""
        return (*self.informative_sensors, *self.operating_settings)

    def row_from_values(self, values: Mapping[str, float]) -> np.ndarray:
        """One window row from a reading's `values`: informative sensors, then operating settings
        (apps.common.features.reading_columns)."""
        return np.array([values[name] for name in self.required_channels], dtype=np.float64)


# ------------------------------------------------------------------------------- the YAML schema
class _Strict(BaseModel):
    # A misspelt key is an error, not a silently ignored line of configuration.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, protected_namespaces=())


Number = Annotated[float, Field(strict=False)]  # YAML `50` is an int: accept it as a float
Name = Annotated[StrictStr, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class ChannelSpec(_Strict):
    min: Number
    max: Number
    description: StrictStr = ""


class ModelSpec(_Strict):
    name: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    kind: ModelKind


class RulAlertsSpec(_Strict):
    warning_rul: Number
    critical_rul: Number
    consecutive: Annotated[int, Field(ge=1)] = 3
    clear_margin: Annotated[Number, Field(ge=0)] = 10.0


class ProbabilityAlertsSpec(_Strict):
    warning_probability: Number
    critical_probability: Number
    consecutive: Annotated[int, Field(ge=1)] = 2
    clear_margin: Annotated[Number, Field(ge=0)] = 0.2


class AnomalyAlertsSpec(_Strict):
    false_alarm_rate: Number
    critical_false_alarm_rate: Number = 0.001
    consecutive: Annotated[int, Field(ge=1)] = 5


_SPEC_KINDS: Final = {RulAlertsSpec: "rul", ProbabilityAlertsSpec: "failure", AnomalyAlertsSpec: "anomaly"}


def _alerts_kind(value: Any) -> str | None:
    """Which alerts block this is, told by its threshold names (a model's kind must match it)."""
    if isinstance(value, BaseModel):
        return _SPEC_KINDS.get(type(value))
    if isinstance(value, dict):
        if "warning_rul" in value or "critical_rul" in value:
            return "rul"
        if "warning_probability" in value or "critical_probability" in value:
            return "failure"
        if "false_alarm_rate" in value:
            return "anomaly"
    return None


Alerts = Annotated[
    Annotated[RulAlertsSpec, Tag("rul")]
    | Annotated[ProbabilityAlertsSpec, Tag("failure")]
    | Annotated[AnomalyAlertsSpec, Tag("anomaly")],
    Discriminator(
        _alerts_kind,
        custom_error_type="alerts_kind",
        custom_error_message="needs warning_rul and critical_rul (a 'rul' model), warning_probability "
        "and critical_probability (a 'failure' model) or false_alarm_rate (an 'anomaly' model)",
    ),
]
_WANTED: Final = {"rul": "warning_rul", "failure": "warning_probability", "anomaly": "false_alarm_rate"}


class ProfileSpec(_Strict):
    """One profile file, as written (and as GET /v1/profiles answers)."""

    name: Name
    description: StrictStr = ""
    model: ModelSpec
    window: Annotated[int, Field(ge=2)] = 30
    silence_after_seconds: Annotated[Number, Field(gt=0)] = 300.0
    stale_after_seconds: Annotated[Number, Field(gt=0)] = 120.0
    reopen_within_seconds: Annotated[Number, Field(ge=0)] = 600.0
    operating_settings: list[Name] = Field(default_factory=list)
    informative_sensors: Annotated[list[Name], Field(min_length=1)]
    channels: Annotated[dict[Name, ChannelSpec], Field(min_length=1)]
    alerts: Alerts

    def to_profile(self) -> EquipmentProfile:
        if _SPEC_KINDS[type(self.alerts)] != self.model.kind:
            wanted = _WANTED[self.model.kind]
            article = "an" if self.model.kind[0] in "aeiou" else "a"
            raise ValueError(
                f"alerts: {article} {self.model.kind!r} model is judged on {wanted} and the like"
            )
        thresholds: Thresholds = _THRESHOLDS[self.model.kind](**self.alerts.model_dump())
        return EquipmentProfile(
            name=self.name,
            channels={k: (c.min, c.max) for k, c in self.channels.items()},
            informative_sensors=tuple(self.informative_sensors),
            operating_settings=tuple(self.operating_settings),
            model_name=self.model.name,
            window=self.window,
            thresholds=thresholds,
            silence_after_seconds=self.silence_after_seconds,
            stale_after_seconds=self.stale_after_seconds,
            reopen_within_seconds=self.reopen_within_seconds,
            model_kind=self.model.kind,
            description=self.description,
            channel_descriptions={k: c.description for k, c in self.channels.items()},
        )

    @classmethod
    def of(cls, profile: EquipmentProfile) -> ProfileSpec:
        """The file that would load as `profile` (what GET /v1/profiles shows)."""
        alerts: RulAlertsSpec | ProbabilityAlertsSpec | AnomalyAlertsSpec
        if isinstance(profile.thresholds, AnomalyThresholds):
            a = profile.thresholds
            alerts = AnomalyAlertsSpec(
                false_alarm_rate=a.false_alarm_rate,
                critical_false_alarm_rate=a.critical_false_alarm_rate,
                consecutive=a.consecutive,
            )
        elif isinstance(profile.thresholds, AlertThresholds):
            t = profile.thresholds
            alerts = RulAlertsSpec(
                warning_rul=t.warning_rul,
                critical_rul=t.critical_rul,
                consecutive=t.consecutive,
                clear_margin=t.clear_margin,
            )
        else:
            p = profile.thresholds
            alerts = ProbabilityAlertsSpec(
                warning_probability=p.warning_probability,
                critical_probability=p.critical_probability,
                consecutive=p.consecutive,
                clear_margin=p.clear_margin,
            )
        return cls(
            name=profile.name,
            description=profile.description,
            model=ModelSpec(name=profile.model_name, kind=profile.model_kind),
            window=profile.window,
            silence_after_seconds=profile.silence_after_seconds,
            stale_after_seconds=profile.stale_after_seconds,
            reopen_within_seconds=profile.reopen_within_seconds,
            operating_settings=list(profile.operating_settings),
            informative_sensors=list(profile.informative_sensors),
            channels={
                k: ChannelSpec(min=lo, max=hi, description=profile.channel_descriptions.get(k, ""))
                for k, (lo, hi) in profile.channels.items()
            },
            alerts=alerts,
        )


def _where(loc: tuple[Any, ...]) -> str:
    # The alerts union's tags ("rul", "failure") are pydantic's bookkeeping, not the file's fields.
    parts = [str(p) for i, p in enumerate(loc) if not (i == 1 and loc[0] == "alerts")]
    return ".".join(parts) or "(top level)"


def parse_profile(text: str, source: str) -> EquipmentProfile:
    """One profile from YAML text; ProfileError naming `source` and the field on any problem."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProfileError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ProfileError(f"{source}: expected a mapping of profile fields, got {type(raw).__name__}")
    try:
        spec = ProfileSpec.model_validate(raw)
    except ValidationError as exc:
        problems = {f"{_where(tuple(e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False)}
        raise ProfileError(f"{source}: " + "; ".join(sorted(problems))) from None
    try:
        return spec.to_profile()
    except ValueError as exc:
        raise ProfileError(f"{source}: {exc}") from None


def load_profiles(folder: Path) -> Mapping[str, EquipmentProfile]:
    """Every `*.yaml` profile of a folder, by name. A file is named after its profile, so two files
    cannot define one kind twice."""
    if not folder.is_dir():
        raise ProfileError(f"profiles folder {folder} does not exist (set {PROFILES_DIR_ENV} to another)")
    profiles: dict[str, EquipmentProfile] = {}
    for path in sorted(folder.glob("*.yaml")):
        profile = parse_profile(path.read_text(encoding="utf-8"), str(path))
        if profile.name != path.stem:
            raise ProfileError(f"{path}: name: {profile.name!r} must match the file name ({path.stem!r})")
        profiles[profile.name] = profile
    if not profiles:
        raise ProfileError(f"profiles folder {folder} has no *.yaml profile")
    return MappingProxyType(profiles)


SHIPPED_PROFILES_DIR: Final = Path(__file__).resolve().parents[2] / "profiles"


def profiles_dir() -> Path:
    override = os.environ.get(PROFILES_DIR_ENV)
    return Path(override) if override else SHIPPED_PROFILES_DIR


# Loaded once per process: a profile is part of a machine's identity for its whole life, and a
# changed file takes effect when the services restart (all of them, so they stay in agreement).
PROFILES: Mapping[str, EquipmentProfile] = load_profiles(profiles_dir())
# The kind the bundled C-MAPSS data belongs to (replay, simulate and tests use it), from the shipped
# file so that it exists whatever folder the platform is configured with.
TURBOFAN: Final = parse_profile(
    (SHIPPED_PROFILES_DIR / "turbofan.yaml").read_text(encoding="utf-8"), "profiles/turbofan.yaml"
)


def get_profile(name: str, profiles: Mapping[str, EquipmentProfile] = PROFILES) -> EquipmentProfile:
    """Look a profile up by name, failing with a message that lists the known ones."""
    try:
        return profiles[name]
    except KeyError:
        raise UnknownProfile(name, tuple(sorted(profiles))) from None
