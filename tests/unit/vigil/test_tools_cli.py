"""`vigil replay` / `vigil simulate` argument handling: clear errors, exit codes, default URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from localdapr.ports import free_port
from vigil.cli import main
from vigil.replay import default_ingestion_url


def test_default_url_is_ingestions_port_in_dapr_yaml(tmp_path: Path) -> None:
    assert default_ingestion_url() == "http://127.0.0.1:8001"
    other = tmp_path / "dapr.yaml"
    other.write_text("version: 1\napps:\n  - appID: ingestion\n    appPort: 9101\n")
    assert default_ingestion_url(other) == "http://127.0.0.1:9101"
    assert default_ingestion_url(tmp_path / "missing.yaml") == "http://127.0.0.1:8001"


def test_bad_units_exit_2_with_a_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--units", "1-3,abc"]) == 2
    err = capsys.readouterr().err
    assert "error: bad --units item 'abc'" in err and "Traceback" not in err
    assert main(["replay", "--units", "99-105"]) == 2
    assert "unit(s) 101, 102, 103, 104, 105 not in the data set" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["replay", "--speed", "fast"], "expected cycles per second"),
        (["replay", "--batch", "0"], "must be at least 1"),
        (["replay", "--batch", "6000"], "at most 5000"),
        (["replay", "--set", "valid"], "invalid choice"),
        (["simulate"], "--machines"),
    ],
)
def test_bad_options_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err


def test_connection_refused_exits_non_zero_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    assert main(["replay", "--units", "1", "--url", url, "--speed", "0"]) == 1
    err = capsys.readouterr().err
    assert f"cannot connect to ingestion at {url} (connection refused)" in err
    assert "vigil up" in err and "Traceback" not in err
    assert main(["simulate", "--machines", "3", "--url", url]) == 1


def test_replay_subset_picks_the_data_and_the_default_prefix() -> None:
    from vigil.cli import build_parser
    from vigil.replay import replay_from_args

    fd002 = replay_from_args(build_parser().parse_args(["replay", "--subset", "FD002", "--units", "260"]))
    assert [m.equipment_id for m in fd002.machines] == ["fd002-260"]  # FD001 has 100 units
    test = replay_from_args(build_parser().parse_args(["replay", "--set", "test", "--units", "3"]))
    assert [m.equipment_id for m in test.machines] == ["fd001-test-003"]
    mine = build_parser().parse_args(["replay", "--subset", "FD002", "--units", "1", "--prefix", "x-"])
    assert [m.equipment_id for m in replay_from_args(mine).machines] == ["x-001"]
