"""Labelled runs of the archive as trainer input (apps/training/runs.py), pure."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from apps.common import cmapss
from apps.common.archive import blocks_from_readings
from apps.common.contracts import EquipmentEvent
from apps.common.features import EARLY_READINGS
from apps.common.profiles import PROFILES, TURBOFAN
from apps.training.history import fleet_lives, split_lives
from apps.training.quality import reading_rows
from apps.training.runs import (
    is_held_out,
    labelled_runs,
    new_runs,
    recent_readings,
    recent_trajectories,
)
from tests.unit.common.test_archive import reading as bare_reading
from vigil.history import cmapss_history

REPO_DATA = Path(__file__).resolve().parents[3] / "data" / "cmapss"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def reading(seq: int):  # type: ignore[no-untyped-def]
    """A turbofan reading carrying every channel, each at the middle of its plausible range."""
    return bare_reading(seq, **{c: (lo + hi) / 2 for c, (lo, hi) in TURBOFAN.channels.items()})


def event(kind: str, seq: int, eq: str = "m1") -> EquipmentEvent:
    return EquipmentEvent(equipment_id=eq, kind=kind, seq=seq, timestamp=NOW, source="api", recorded_at=NOW)  # type: ignore[arg-type]


def test_imported_fd001_gives_the_fd001_trajectories_and_the_files_held_out_split() -> None:
    history = cmapss_history(REPO_DATA / "train_FD001.txt.gz", TURBOFAN, NOW)
    lives = fleet_lives({b.equipment_id: b for b in history.blocks[:20]}, history.events)
    runs = labelled_runs(lives, TURBOFAN)
    train = cmapss.load_train()
    assert sorted(runs.keys[u] for u in runs.held_out) == [f"fd001-{u:03d}#0" for u in (5, 10, 15, 20)]
    assert len(runs.fit) == 16 and runs.skipped == []
    for unit, traj in {**runs.fit, **runs.held_out}.items():
        number = int(runs.keys[unit].split("-")[1].split("#")[0])
        np.testing.assert_array_equal(traj[:, 1:], train[number][:, 1:])  # cycles, settings, sensors


def test_a_cut_run_and_other_lives_are_not_trained_on() -> None:
    [block] = blocks_from_readings([reading(s) for s in range(1, 61)])
    lives = split_lives(block, [event("failure", 20), event("maintenance", 40), event("failure", 70)])
    runs = labelled_runs(lives, TURBOFAN)
    assert list(runs.keys.values()) == ["m1#0"]  # life 1 censored, life 2 cut 10 readings early
    assert runs.skipped == ["m1#2: the failure is 10 readings after the last one archived (a cut run, not a "
                            "whole run to failure)"]  # fmt: skip


def test_held_out_runs_are_fixed_by_id_and_life() -> None:
    assert is_held_out("fd001-005", 0) and not is_held_out("fd001-005", 1) and is_held_out("fd001-004", 1)
    assert is_held_out("press", 0) == is_held_out("press", 0)


def test_new_runs_are_those_the_champion_did_not_see() -> None:
    assert new_runs({"a#0", "b#0", "c#1"}, ["a#0"]) == ["b#0", "c#1"]
    assert new_runs({"a#0"}, None) == ["a#0"]  # a champion trained elsewhere: every run is new
    assert new_runs({"a#0"}, ["a#0", "z#0"]) == []


def test_recent_trajectories_are_the_running_lives_tails_with_ages_from_the_life_start() -> None:
    [block] = blocks_from_readings([reading(s) for s in range(1, 61)])
    lives = split_lives(block, [event("maintenance", 20)])
    [tail] = recent_trajectories(lives, TURBOFAN, last=15).values()
    assert tail.shape[0] == 15 and tail[0, 1] == 26 and tail[-1, 1] == 40  # life 1: seq 21..60


def test_recent_readings_are_the_same_tails_in_the_actors_columns_for_any_profile() -> None:
    [block] = blocks_from_readings([reading(s) for s in range(1, 61)])
    lives = split_lives(block, [event("maintenance", 20)])
    [(rows, ages, head)] = recent_readings(lives, TURBOFAN, last=15)
    [tail] = recent_trajectories(lives, TURBOFAN, last=15).values()
    assert ages.tolist() == tail[:, 1].tolist() and np.array_equal(rows, reading_rows(tail, TURBOFAN))
    [whole] = recent_trajectories(lives, TURBOFAN, last=1000).values()  # the life's first readings
    assert np.array_equal(head, reading_rows(whole, TURBOFAN)[:EARLY_READINGS])
    assert recent_readings(lives, PROFILES["milling"], last=15) == []  # no milling machine here


def test_a_run_missing_a_feature_channel_is_skipped_with_the_reason() -> None:
    [block] = blocks_from_readings([bare_reading(s) for s in range(1, 31)])
    runs = labelled_runs(split_lives(block, [event("failure", 30)]), TURBOFAN)
    assert runs.keys == {} and runs.skipped[0].startswith("m1#0: readings without sensor_2")
