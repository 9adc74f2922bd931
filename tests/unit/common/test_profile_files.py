"""Profiles are YAML files: the shipped ones load and fit their data sets; bad files fail clearly."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from apps.common import cmapss
from apps.common.profiles import (
    PROFILES,
    SHIPPED_PROFILES_DIR,
    TURBOFAN,
    AlertThresholds,
    AnomalyThresholds,
    ProbabilityThresholds,
    ProfileError,
    ProfileSpec,
    load_profiles,
    parse_profile,
)
from apps.ingestion.validation import validate_batch
from vigil.fleet import batches, replay_fleet

REPO = Path(__file__).resolve().parents[3]
NOW = datetime(2030, 1, 1, tzinfo=UTC)
MINIMAL = """
name: pump
model: {name: pump-rul, kind: rul}
informative_sensors: [vibration]
channels:
  vibration: {min: 0, max: 50, description: "RMS velocity (mm/s)"}
alerts: {warning_rul: 40, critical_rul: 10}
"""


def test_shipped_profiles_load_from_the_profiles_folder() -> None:
    assert set(PROFILES) == {"turbofan", "milling", "turbofan-anomaly"}
    assert load_profiles(SHIPPED_PROFILES_DIR) == PROFILES
    assert TURBOFAN.model_kind == "rul" and isinstance(TURBOFAN.thresholds, AlertThresholds)
    milling = PROFILES["milling"]
    assert milling.model_kind == "failure" and milling.model_name == "milling-failure"
    assert milling.thresholds == ProbabilityThresholds(0.5, 0.8, 2, 0.2)
    assert milling.thresholds.clear_probability == pytest.approx(0.3)
    assert "degR" in TURBOFAN.channel_descriptions["sensor_2"]
    anomaly = PROFILES["turbofan-anomaly"]
    assert anomaly.model_kind == "anomaly" and anomaly.model_name == "turbofan-anomaly"
    assert anomaly.thresholds == AnomalyThresholds(0.01, 0.002, 5)  # the scores come from a model card
    # the same channels as turbofan: one fleet's readings fit either profile
    assert anomaly.channels == TURBOFAN.channels and anomaly.required_channels == TURBOFAN.required_channels


def test_an_anomaly_profile_learns_its_score_thresholds_from_the_card() -> None:
    settings = PROFILES["turbofan-anomaly"].thresholds
    assert isinstance(settings, AnomalyThresholds)
    learned = settings.learned({"warning": 0.1, "critical": 0.2})
    assert (learned.warning_score, learned.critical_score, learned.consecutive) == (0.1, 0.2, 5)
    assert settings.learned(None).warning_score is None
    with pytest.raises(ValueError, match="critical_score must be at or above"):
        settings.learned({"warning": 0.3, "critical": 0.2})


def test_a_new_kind_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "pump.yaml").write_text(MINIMAL)
    [pump] = load_profiles(tmp_path).values()
    assert pump.name == "pump" and pump.window == 30 and pump.channels["vibration"] == (0.0, 50.0)
    assert pump.thresholds == AlertThresholds(40.0, 10.0, 3, 10.0)


def test_spec_round_trips_every_shipped_profile() -> None:
    for profile in PROFILES.values():
        spec = ProfileSpec.of(profile)
        assert parse_profile(spec.model_dump_json(), "api") == profile  # JSON is YAML


RUL_ALERTS = "{warning_rul: 40, critical_rul: 10}"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("max: 50", "max: fifty", "pump.yaml: channels.vibration.max: Input should be"),
        ("kind: rul", "kind: magic", "model.kind: Input should be 'rul', 'failure' or 'anomaly'"),
        ("model:", "windw: 10\nmodel:", "windw: Extra inputs are not permitted"),
        ("[vibration]", "[vibration, temp]", "undeclared channels: ['temp']"),
        ("critical_rul: 10", "critical_rul: 60", "critical_rul must be below warning_rul"),
        ("min: 0,", "min: 60,", "channel 'vibration': range min must be below max"),
        (RUL_ALERTS, "{warn: 1}", "alerts: needs warning_rul"),
        (RUL_ALERTS, "{warning_probability: 0.5, critical_probability: 0.9}", "judged on warning_rul"),
        (RUL_ALERTS, "{false_alarm_rate: 0.01}", "judged on warning_rul"),
        ("kind: rul", "kind: anomaly", "an 'anomaly' model is judged on false_alarm_rate"),
        ("name: pump\n", "name: pump2\n", "name: 'pump2' must match the file name"),
        (MINIMAL, "- just\n- a list\n", "expected a mapping of profile fields, got list"),
        (MINIMAL, "name: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_files_name_the_file_and_the_field(tmp_path: Path, old: str, new: str, message: str) -> None:
    assert old in MINIMAL
    (tmp_path / "pump.yaml").write_text(MINIMAL.replace(old, new))
    with pytest.raises(ProfileError) as exc:
        load_profiles(tmp_path)
    assert str(tmp_path / "pump.yaml") in str(exc.value) and message in str(exc.value)


def test_anomaly_rates_must_be_ordered(tmp_path: Path) -> None:
    bad = MINIMAL.replace("kind: rul", "kind: anomaly").replace(
        RUL_ALERTS, "{false_alarm_rate: 0.01, critical_false_alarm_rate: 0.1}"
    )
    (tmp_path / "pump.yaml").write_text(bad)
    with pytest.raises(ProfileError, match="need 0 < critical_false_alarm_rate < false_alarm_rate"):
        load_profiles(tmp_path)


def test_missing_or_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match="does not exist.*VIGIL_PROFILES_DIR"):
        load_profiles(tmp_path / "nope")
    with pytest.raises(ProfileError, match="has no \\*.yaml profile"):
        load_profiles(tmp_path)


@pytest.mark.parametrize("subset", cmapss.SUBSETS)
def test_every_cmapss_unit_replays_through_ingestion_validation(subset: str) -> None:
    """FD002 flies six conditions (up to 42 kft, Mach 0.84): its readings must pass like FD001's."""
    for data_set, units in (("train", cmapss.load_train(subset)), ("test", cmapss.load_test(subset))):
        fleet = replay_fleet(units, sorted(units), f"{subset.lower()}-{data_set}-")
        readings = [r for t in range(fleet.n_ticks) for r in fleet.tick(t, NOW)]
        assert len(readings) == sum(u.shape[0] for u in units.values())
        for chunk in batches(readings, 5000):
            good, rejected = validate_batch(chunk, PROFILES, NOW + timedelta(seconds=1))
            assert rejected == [], rejected[:3]


def test_fd002_files_match_the_readme() -> None:
    train, test, rul = cmapss.load_train("FD002"), cmapss.load_test("FD002"), cmapss.load_rul("FD002")
    assert len(train) == 260 and len(test) == 259 and len(rul) == 259
    assert sum(t.shape[0] for t in train.values()) == 53759
    assert sum(t.shape[0] for t in test.values()) == 33991


def test_every_ai4i_row_fits_the_milling_profile() -> None:
    milling = PROFILES["milling"]
    quality = {"L": 0.0, "M": 1.0, "H": 2.0}
    columns = {
        "air_temperature": "Air temperature [K]",
        "process_temperature": "Process temperature [K]",
        "rotational_speed": "Rotational speed [rpm]",
        "torque": "Torque [Nm]",
        "tool_wear": "Tool wear [min]",
    }
    with (REPO / "data" / "ai4i2020" / "ai4i2020.csv").open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 10000
    for row in rows:
        values = {name: float(row[col]) for name, col in columns.items()}
        values["product_quality"] = quality[row["Type"]]
        for name, value in values.items():
            lo, hi = milling.channels[name]
            assert lo <= value <= hi, (row["UDI"], name, value)
