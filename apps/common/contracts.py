"""Wire contracts of Vigil's equipment pipeline, each defined once and imported by every service.

Flow: gateway/simulator --ReadingBatch--> ingestion (validate: ReadingRejection, group) -->
EquipmentActor.ingest(readings) --EquipmentIngestResult--> ingestion --IngestResult--> client;
actor --PredictRequest--> inference --PredictResponse (Prediction per row)-->; actor publishes
HealthSnapshot on `equipment-health` and Alert on `alerts`; training registers a ModelCard.

Types are strict where a lax coercion would hide a client bug (a sequence number sent as "5" or
`true`, a sensor value sent as a string), so a 4xx names the offending field.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Final, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from apps.common.ai4i import CHANNELS as AI4I_CHANNELS
from apps.common.ai4i import QUALITY_CHANNEL as AI4I_QUALITY_CHANNEL
from apps.common.cmapss import COLUMNS as CMAPSS_COLUMNS
from apps.common.features import FeatureSpec
from apps.common.profiles import PROFILES

MAX_BATCH_READINGS: Final = 5000
MAX_VALUES_PER_READING: Final = 256
MAX_NAME_LENGTH: Final = 64
MAX_FEATURES: Final = 4096  # features of one prediction row (a profile's sensors x statistics + age)
# An equipment id becomes an actor id, state keys and archive folder names: no '/', no '||', no control
# character, and no leading '.' (so never '.' or '..', nor a hidden file).
EQUIPMENT_ID_PATTERN: Final = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$"
EQUIPMENT_ID_RULE: Final = "letters, digits, '.', '_' or '-' (not first), 1-64 characters"
# The largest integer a JSON number holds exactly in every client (IEEE double): a seq beyond it would
# be rounded somewhere on its way and could never be told from its neighbours.
MAX_SEQ: Final = 2**53 - 1
# Readings are kept as epoch seconds: one before 1970 is a clock that was never set, and one past 2200
# cannot be turned into a date in every time zone by every consumer (the archive partitions by UTC day).
EARLIEST_TIME: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_TIME: Final = datetime(2200, 1, 1, tzinfo=UTC)

EquipmentId = Annotated[StrictStr, Field(pattern=EQUIPMENT_ID_PATTERN, examples=["engine-001"])]
ProfileName = Annotated[StrictStr, Field(min_length=1, max_length=MAX_NAME_LENGTH, examples=["turbofan"])]
SensorName = Annotated[StrictStr, Field(min_length=1, max_length=MAX_NAME_LENGTH)]
Seq = Annotated[StrictInt, Field(ge=0, le=MAX_SEQ, description="Per-equipment sequence number, increasing.")]
# "stale": the latest readings are applied but their predictions are still owed (inference unreachable),
# so the platform does not know the machine is fine and must not say "ok". "down": a failure event ended
# its life and it has sent no reading since.
Status = Literal["ok", "warning", "critical", "silent", "stale", "warming_up", "down"]
Severity = Literal["warning", "critical"]
AlertKind = Literal["rul_low", "silent", "stale"]
AlertState = Literal["open", "cleared"]
# "reopen": an episode that cleared comes back within its profile's cooldown (flapping), so the same
# alert opens again instead of a new one. "resolve": the machine's life ended (a failure, maintenance or
# replacement event), so its open episodes end for good; the alert's message says which event.
AlertEvent = Literal["open", "escalate", "clear", "reopen", "resolve"]


class _Contract(BaseModel):
    # Unknown fields are refused rather than silently dropped, so a misspelt field is a 4xx.
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


def _check_time(value: datetime | None, field_name: str) -> datetime | None:
    """A time must say its zone (a naive one is ambiguous) and lie in the window every consumer handles."""
    if value is not None and (value.tzinfo is None or value.utcoffset() is None):
        raise ValueError(
            f"{field_name} must be timezone-aware (e.g. '2024-01-01T00:00:00Z' or '+02:00'), got a naive time"
        )
    if value is not None and not EARLIEST_TIME <= value < LATEST_TIME:
        raise ValueError(f"{field_name} must be between 1970-01-01 and 2200-01-01 (UTC)")
    return value


def _require_finite(values: list[float], field_name: str) -> list[float]:
    if all(map(math.isfinite, values)):  # the common case without a Python loop: ~1.5x faster
        return values
    for i, v in enumerate(values):
        if not math.isfinite(v):
            raise ValueError(f"{field_name}[{i}] is not finite ({v})")
    return values


class Reading(_Contract):
    """One sensor reading of one machine."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        protected_namespaces=(),
        json_schema_extra={
            "examples": [
                {
                    "equipment_id": "engine-001",
                    "profile": "turbofan",
                    "timestamp": "2024-01-01T00:00:00Z",
                    "seq": 0,
                    "values": {"sensor_2": 641.82, "sensor_3": 1589.7},
                }
            ]
        },
    )

    equipment_id: EquipmentId
    profile: ProfileName = "turbofan"
    timestamp: datetime
    seq: Seq
    values: Annotated[dict[SensorName, StrictFloat], Field(min_length=1, max_length=MAX_VALUES_PER_READING)]

    @field_validator("timestamp")
    @classmethod
    def _timestamp_aware(cls, v: datetime) -> datetime:
        _check_time(v, "timestamp")
        return v

    @field_validator("values")
    @classmethod
    def _values_finite(cls, v: dict[str, float]) -> dict[str, float]:
        if all(map(math.isfinite, v.values())):  # as _require_finite: the loop only to name one
            return v
        for sensor, value in v.items():
            if not math.isfinite(value):
                raise ValueError(f"sensor {sensor!r} value is not finite ({value})")
        return v


class ReadingBatch(_Contract):
    readings: Annotated[list[Reading], Field(min_length=1, max_length=MAX_BATCH_READINGS)]


class FeatureVector(_Contract):
    """Features of one machine's window, in `feature_names` order (see apps.common.features)."""

    equipment_id: EquipmentId
    profile: ProfileName
    feature_names: list[str]
    values: list[float]
    window_end_seq: Seq
    age_cycles: float

    @field_validator("values")
    @classmethod
    def _finite(cls, v: list[float]) -> list[float]:
        return _require_finite(v, "values")


class PredictRequest(_Contract):
    model_name: Annotated[StrictStr, Field(min_length=1, max_length=128, examples=["turbofan-rul"])]
    feature_names: Annotated[
        list[Annotated[StrictStr, Field(max_length=128)]], Field(min_length=1, max_length=MAX_FEATURES)
    ]
    rows: Annotated[
        list[Annotated[list[StrictFloat], Field(max_length=MAX_FEATURES)]],
        Field(min_length=1, max_length=MAX_BATCH_READINGS),
    ]
    model_version: int | None = Field(
        None,
        ge=1,
        description="The version whose feature spec computed the rows: refused with a 409 if another "
        "version is served (a hot swap happened), so features and model always match.",
    )

    @field_validator("rows")
    @classmethod
    def _rows_shape(cls, rows: list[list[float]], info: ValidationInfo) -> list[list[float]]:
        names = info.data.get("feature_names")  # absent if feature_names itself failed
        for i, row in enumerate(rows):
            if names is not None and len(row) != len(names):
                raise ValueError(f"rows[{i}] has {len(row)} values, expected {len(names)} (feature_names)")
            _require_finite(row, f"rows[{i}]")
        return rows


class Prediction(_Contract):
    value: float = Field(description="Predicted remaining useful life, in cycles.")
    model_name: str
    model_version: int


class PredictResponse(_Contract):
    predictions: list[Prediction]
    model_name: str
    model_version: int


class HealthSnapshot(_Contract):
    """One machine's health as the EquipmentActor sees it (published on `equipment-health`)."""

    equipment_id: EquipmentId
    profile: ProfileName
    last_seq: int = Field(ge=-1, description="-1 before any reading was applied.")
    readings_applied: int = Field(ge=0)
    duplicates: int = Field(ge=0)
    predicted_rul: float | None = None
    prediction_stale: bool = False
    predictions_owed: int = Field(0, ge=0, description="Window positions waiting for inference.")
    predictions_skipped: int = Field(0, ge=0, description="Owed predictions given up (outage too long).")
    model_version: int | None = None
    status: Status
    last_reading_at: datetime | None = None
    updated_at: datetime
    revision: int = Field(
        0,
        ge=0,
        le=MAX_SEQ,
        description="Counts the changes of the actor's state: a receiver orders snapshots by it, not by "
        "their clocks (0: from an actor that did not number them).",
    )
    open_alert_severity: Severity | None = None
    life: int = Field(
        0,
        ge=0,
        description="The machine's life: 0 until its first failure, maintenance or replacement event, "
        "then one more per event (training's run key <machine>#<life> counts the same way).",
    )
    life_readings: int = Field(
        0, ge=0, description="Readings applied in the current life: the age training counts, in readings."
    )

    @field_validator("last_reading_at", "updated_at")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        return _check_time(v, "time")


def snapshot_is_newer(current: HealthSnapshot | None, new: HealthSnapshot) -> bool:
    """Whether `new` is a later state of its machine than `current` (None: nothing kept yet), whatever
    order snapshots arrive in. The actor numbers the changes of its state (`revision`), so its own order
    decides, not a clock: a snapshot stamped in 2030 is not newer than the next real one. A numbered
    snapshot beats one without a number (an actor from before revisions, or a forgery); two unnumbered
    ones are ordered by time."""
    if current is None:
        return True
    if new.revision or current.revision:
        return (new.revision, new.readings_applied, new.duplicates, new.updated_at) > (
            current.revision,
            current.readings_applied,
            current.duplicates,
            current.updated_at,
        )
    return (new.updated_at, new.readings_applied, new.duplicates) > (
        current.updated_at,
        current.readings_applied,
        current.duplicates,
    )


class SensorDeviation(_Contract):
    """How far a sensor's current mean sits from the machine's own baseline, in baseline stds."""

    sensor: str
    z_score: float
    baseline_mean: float
    current_mean: float


class AlertReading(_Contract):
    """The reading whose prediction decided an alert event (not the last one of its batch)."""

    seq: Seq
    timestamp: datetime
    predicted_rul: float = Field(description="That reading's prediction (a probability for a classifier).")

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        _check_time(v, "timestamp")
        return v


class Alert(_Contract):
    """An alert event. `id` is stable per episode, so redelivery and re-publication deduplicate.

    `revision` numbers the events of one episode (1 = open) in the order the actor decided them, so a
    receiver orders them whatever their delivery order (0: an event without one, ordered by time).
    `reading` is the reading that decided a `rul_low` event; silence and stale events have none (they
    are decided by the clock).
    """

    id: str
    equipment_id: EquipmentId
    kind: AlertKind
    episode: int = Field(ge=1)
    revision: int = Field(0, ge=0)
    severity: Severity
    state: AlertState
    event: AlertEvent
    reading: AlertReading | None = None
    predicted_rul: float | None = None
    model_version: int | None = None
    top_sensors: list[SensorDeviation] = Field(default_factory=list)
    message: str = ""
    raised_at: datetime
    updated_at: datetime

    @staticmethod
    def make_id(equipment_id: str, kind: str, episode: int) -> str:
        return f"{equipment_id}:{kind}:{episode}"

    @field_validator("raised_at", "updated_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        _check_time(v, "time")
        return v

    @field_validator("id")
    @classmethod
    def _id_shape(cls, v: str) -> str:
        if v.count(":") < 2:
            raise ValueError("id must be '<equipment_id>:<kind>:<episode>' (use Alert.make_id)")
        return v


class FeatureReference(_Contract):
    """One feature's training distribution, the reference its drift is measured against: the inner
    edges of equal-population bins of the training values and the share of training rows in each."""

    name: str
    edges: list[float]
    shares: list[float]


class ModelCard(_Contract):
    """What the model registry stores next to each ONNX version."""

    name: str
    version: int = Field(ge=1)
    created_at: datetime
    profile: str
    kind: Literal["rul", "failure", "anomaly"] | None = Field(
        None, description="The model kind (the profile's); none for models trained before cards held it."
    )
    feature_names: list[str]
    metrics: dict[str, float]
    training_data_fingerprint: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of training data")
    rul_cap: float | None
    n_train_rows: int = Field(ge=0)
    n_train_units: int = Field(ge=0)
    params: dict[str, float | int | str | None] = Field(default_factory=dict)
    framework_versions: dict[str, str] = Field(default_factory=dict)
    onnx_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    onnx_max_abs_diff: float | None = None
    feature_reference: list[FeatureReference] | None = Field(
        None,
        description="Each feature's training distribution (apps/training/drift.py), for feature drift; "
        "none for models trained before the card held it.",
    )
    features: FeatureSpec | None = Field(
        None,
        description="How the features are computed (window, operating conditions); none for models "
        "trained before the card held it (the profile's window, raw sensors).",
    )
    alert_thresholds: dict[str, float] | None = Field(
        None,
        description="An anomaly model's score thresholds, `warning` and `critical`: the scores held-out "
        "healthy data exceed at the profile's false-alarm rates; the actors alert on them.",
    )
    unused_features: list[str] | None = Field(
        None,
        description="Features the model was fitted with held constant, so it never splits on them "
        "(`failure` and `anomaly`: the age); drift leaves them out. None: not stated (cards from before "
        "it; a `failure` or `anomaly` card then ignores the age).",
    )

    @field_validator("created_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        _check_time(v, "created_at")
        return v


EventKind = Literal["failure", "maintenance", "replaced"]


class EquipmentEventRequest(_Contract):
    """Body of `POST /v1/equipment/{id}/events`: what happened to a machine, and after which reading.

    `failure` closes the machine's run: the readings since its last event become a run to failure
    whose RUL labels are known (failure seq - seq). `maintenance` and `replaced` end the current life
    without a failure (those readings are censored: RUL unknown, but more than was left), and the next
    reading starts a new life.
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={"examples": [{"kind": "failure", "seq": 192, "note": "HPC blade loss"}]},
    )

    kind: EventKind
    seq: Seq | None = Field(
        None, description="The last reading before the event; default: the last one the platform applied."
    )
    timestamp: datetime | None = Field(None, description="When it happened; default: when it is recorded.")
    note: Annotated[StrictStr, Field(max_length=2000)] = ""

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        return _check_time(v, "timestamp")


class EquipmentEvent(_Contract):
    """An event as the archive keeps it (`events/<machine>/<seq>-<kind>.json`): the labels."""

    equipment_id: EquipmentId
    kind: EventKind
    seq: Seq
    timestamp: datetime
    note: str = ""
    source: Literal["api", "import"]
    recorded_at: datetime

    @field_validator("timestamp", "recorded_at")
    @classmethod
    def _aware(cls, v: datetime) -> datetime:
        _check_time(v, "time")
        return v


class ReadingRejection(_Contract):
    index: int = Field(ge=0, description="Position of the reading in the submitted batch.")
    equipment_id: str | None = None
    reason: str
    retryable: bool = Field(
        False,
        description="Not applied because of a passing failure: send the reading again (with backoff). "
        "Otherwise the reading itself is wrong and was dead-lettered.",
    )


class EquipmentIngestResult(_Contract):
    """What EquipmentActor.ingest returns for one machine's share of a batch."""

    accepted: int = Field(ge=0)
    duplicates: int = Field(ge=0)
    too_late: list[int] = Field(
        default_factory=list, description="Seqs never applied that arrived after later ones were."
    )
    too_far: list[int] = Field(
        default_factory=list,
        description="Seqs refused because they jump further ahead of the machine's last one than allowed.",
    )
    health: HealthSnapshot


class IngestResult(_Contract):
    """The ingestion API's answer to a batch."""

    accepted: int = Field(ge=0)
    duplicates: int = Field(ge=0)
    rejected: list[ReadingRejection] = Field(default_factory=list)
    health: dict[str, HealthSnapshot] = Field(default_factory=dict)


TrainDataset = Literal["FD001", "FD002", "AI4I2020"]  # the data sets data/ ships (C-MAPSS, AI4I 2020)
DATASETS: Final = get_args(TrainDataset)


class TrainRequest(BaseModel):
    """What to train, from what. Every field is optional (`{}` or no body: the configured profile from
    the archive); an unknown field, profile or a kind the profile does not use is refused with a 422,
    so a typo never starts a training run."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        json_schema_extra={
            "examples": [
                {},
                {"source": "dataset", "dataset": "FD001", "force": True},
                {"profile": "milling", "source": "dataset"},
                {"profile": "turbofan-anomaly", "source": "archive"},
            ]
        },
    )

    profile: str | None = Field(None, max_length=64, description="Equipment profile (default: configured).")
    kind: Literal["rul", "failure", "anomaly"] | None = Field(
        None, description="The model kind; must be the profile's (`rul`, `failure` or `anomaly`)."
    )
    source: Literal["archive", "dataset"] = Field(
        "archive",
        description="`archive`: the fleet's history (readings + failure events; an anomaly model needs "
        "no events); `dataset`: a data set shipped in data/ (C-MAPSS for turbofan profiles, AI4I 2020 "
        "for milling).",
    )
    dataset: TrainDataset | None = Field(
        None,
        description="With source `dataset` only; default: the profile's (FD001 for a profile with "
        "C-MAPSS channels, AI4I2020 for one with AI4I's).",
    )
    force: bool = Field(
        False,
        description="Train even without new labelled runs, and promote whatever the gate finds.",
    )
    note: str = Field("", max_length=500, description="Why, kept with the job and its decision.")

    @model_validator(mode="after")
    def _coherent(self) -> TrainRequest:
        if self.profile is not None and self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; known: {', '.join(sorted(PROFILES))}")
        if self.kind is not None and self.profile is None:
            which = sorted(n for n, p in PROFILES.items() if p.model_kind == self.kind)
            raise ValueError(
                f"'kind' needs the 'profile' whose model it is (a profile has one model; "
                f"{self.kind!r}: {', '.join(which) or 'none'})"
            )
        own = None if self.profile is None else PROFILES[self.profile].model_kind
        if own is not None and self.kind is not None and self.kind != own:
            raise ValueError(f"profile {self.profile!r} uses a {own!r} model, not {self.kind!r}")
        if self.source == "archive" and self.dataset is not None:
            raise ValueError("'dataset' names a file for source 'dataset'; the archive needs none")
        if self.dataset is not None and self.profile is not None:
            missing = [
                c for c in PROFILES[self.profile].required_channels if c not in DATASET_CHANNELS[self.dataset]
            ]
            if missing:
                raise ValueError(f"{self.dataset} has no {', '.join(missing)}: not {self.profile!r} data")
        return self


# The channels each shipped data set has (a profile trains on one only if it has all it needs).
DATASET_CHANNELS: Final[dict[str, frozenset[str]]] = {
    "FD001": frozenset(CMAPSS_COLUMNS),
    "FD002": frozenset(CMAPSS_COLUMNS),
    "AI4I2020": frozenset([AI4I_QUALITY_CHANNEL, *AI4I_CHANNELS]),
}
