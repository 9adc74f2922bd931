"""An anomaly profile's alerts: thresholds learnt from the served model card, not the profile."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from apps.common import cmapss
from apps.common.contracts import ModelCard, Reading
from apps.common.features import FeatureSpec
from apps.common.profiles import PROFILES, AnomalyThresholds
from apps.equipment.alarms import AlertHysteresis, judge
from apps.equipment.announce import build_alert
from apps.equipment.domain import EquipmentState
from apps.equipment.ports import ServedSpecs

ANOMALY = PROFILES["turbofan-anomaly"]
LEARNT = {"warning": 0.05, "critical": 0.08}
START = datetime(2030, 1, 1, tzinfo=UTC)


def test_an_unlearnt_threshold_neither_alarms_nor_clears() -> None:
    settings = AnomalyThresholds()
    assert judge(settings, 99.0) == (False, False, False)
    h = AlertHysteresis(settings)
    assert all(h.update(99.0, seq, 1000.0 + seq) is None for seq in range(20)) and h.level == "none"


def test_scores_strictly_above_the_learnt_thresholds_alarm() -> None:
    learnt = AnomalyThresholds().learned(LEARNT)
    assert judge(learnt, 0.05) == (False, False, True)  # at the threshold: the healthy side
    assert judge(learnt, 0.06) == (True, False, False)
    assert judge(learnt, 0.09) == (True, True, False)


def readings(n: int) -> list[Reading]:
    engine = cmapss.load_train()[3]
    return [
        Reading(
            equipment_id="an-1",
            profile=ANOMALY.name,
            timestamp=START + timedelta(seconds=i),
            seq=i + 1,
            values=cmapss.row_values(engine[i]),
        )
        for i in range(n)
    ]


def test_the_machine_alerts_after_consecutive_scores_above_the_cards_threshold() -> None:
    state = EquipmentState.new("an-1", ANOMALY)
    state.apply_readings(readings(12), now=0.0)
    owed = state.owed_features(100)
    scores = [0.0] * 6 + [0.06] * 6  # healthy, then six above warning (consecutive: 5)
    points = [(v.window_end_seq, s) for v, s in zip(owed, scores, strict=True)]
    transitions = state.record_predictions(points, 1, now=1.0, learned=LEARNT)
    assert [(t.event, t.severity, t.seq) for t in transitions] == [("open", "warning", 11)]
    alert = build_alert(state, transitions[0])
    assert "anomaly score 0.060" in alert.message and alert.reading is not None
    assert state.status() == "warning"


def test_without_a_learnt_threshold_the_same_scores_raise_nothing() -> None:
    state = EquipmentState.new("an-1", ANOMALY)
    state.apply_readings(readings(12), now=0.0)
    owed = state.owed_features(100)
    points = [(v.window_end_seq, 0.5) for v in owed]
    assert state.record_predictions(points, 1, now=1.0, learned=None) == []
    assert state.status() == "ok"


class OneCard:
    """Inference's `GET v1/models/{name}` answering one card."""

    def __init__(self, card: ModelCard) -> None:
        self.card = card

    async def served_card(self, model_name: str) -> ModelCard:
        return self.card

    async def predict(self, *args: object) -> None:
        raise AssertionError("not called")


@pytest.mark.asyncio
async def test_the_actors_learn_a_versions_thresholds_with_its_spec() -> None:
    card = ModelCard(
        name=ANOMALY.model_name,
        version=3,
        created_at=START,
        profile=ANOMALY.name,
        kind="anomaly",
        feature_names=["x"],
        metrics={},
        training_data_fingerprint="0" * 64,
        rul_cap=None,
        n_train_rows=1,
        n_train_units=1,
        onnx_sha256="0" * 64,
        features=FeatureSpec(window=ANOMALY.window),
        alert_thresholds=LEARNT,
    )
    specs = ServedSpecs(OneCard(card))  # type: ignore[arg-type]
    assert specs.alert_thresholds(ANOMALY.model_name, 3) is None  # not fetched yet
    assert await specs.get(ANOMALY) == (3, card.features)
    assert specs.alert_thresholds(ANOMALY.model_name, 3) == LEARNT
    assert specs.alert_thresholds(ANOMALY.model_name, 2) is None  # another version's are not these
