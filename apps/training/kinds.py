"""One interface per model kind: what a training job asks of `rul`, `failure` and `anomaly` alike.

The job (service.py) is the same for every kind: gather data (a shipped data set, or the fleet's
archive cut into lives), fit and export to ONNX (checked against the fitted model within 1e-4, or
refused), register with a model card, score candidate and champion on the same held-out data and let
the kind's gate rule decide. What differs is behind `ModelKindTrainer`, one module per kind:
`kind_rul.py` (LightGBM RUL regression on runs to failure), `kind_failure.py` (a calibrated failure
classifier, labels from failure events), `kind_anomaly.py` (no labels: each life's healthy start).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from apps.common.contracts import ModelCard, TrainRequest
from apps.common.profiles import EquipmentProfile, ModelKind
from apps.training.history import Life
from apps.training.promotion import GateRule

Progress = Callable[[str, float], None]


class NoNewData(Exception):
    """The job has nothing to learn from: it says why and stops."""


@dataclass(frozen=True, slots=True)
class KindData:
    """What a kind gathered: `fit` and `held_out` are the kind's own (only it reads them); `keys` name
    the runs or lives the version sees, recorded per version so a later archive job knows what is new."""

    fit: Any
    held_out: Any
    keys: list[str]
    fingerprint: str  # sha256 of the data fitted on (the card's training_data_fingerprint)
    n_fit: int  # runs, lives or readings fitted on
    n_held_out: int  # ... and held out for the gate (the job shows it)
    split_rule: str  # what is held out, for the message when one side is empty
    skipped: list[str] = field(default_factory=list)  # what could not be used, with the reason
    # The keys whose arrival makes a retrain worth it when the newest version has not seen them (the
    # retrain schedule counts them): None, every key (`rul`: each run to failure); `failure`: the lives
    # a failure ended; `anomaly`: the lives with a healthy early life to learn from.
    evidence: list[str] | None = None

    @property
    def evidence_keys(self) -> list[str]:
        return self.keys if self.evidence is None else self.evidence

    def check_usable(self) -> None:
        if not self.n_fit or not self.n_held_out:
            raise ValueError(
                f"{self.n_fit} to fit and {self.n_held_out} held out: a job needs both ({self.split_rule})"
            )


class ModelKindTrainer(Protocol):
    """A model kind's part of a training job. `dataset` and `archive` raise ValueError for data the
    kind cannot use (named), `archive` raises NoNewData when the archive holds nothing to learn from."""

    kind: ModelKind
    rule: GateRule  # what the promotion gate compares

    def dataset(self, request: TrainRequest, profile: EquipmentProfile) -> KindData: ...

    def archive(self, lives: Sequence[Life], profile: EquipmentProfile) -> KindData: ...

    def fit(
        self,
        profile: EquipmentProfile,
        data: KindData,
        version: int,
        params: Mapping[str, Any],
        report: Progress,
    ) -> tuple[ModelCard, bytes]: ...

    def evaluate(
        self, onnx: bytes, card: ModelCard, data: KindData, profile: EquipmentProfile
    ) -> dict[str, float]: ...
