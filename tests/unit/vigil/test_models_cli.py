"""`vigil models list|show|promote|rollback` against training's real HTTP API (the app served by uvicorn
on a loopback port, its registry in memory): tables, clear errors and exit code 1 on refusals."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import uvicorn

from apps.common.contracts import ModelCard
from apps.common.profiles import PROFILES, TURBOFAN
from apps.common.registry import DriftReport, FeatureDrift
from apps.training import app as training_app
from apps.training.champions import ModelCatalog
from apps.training.kind_failure import FAILURE_RULE
from apps.training.promotion import decide
from apps.training.service import TrainingService
from localdapr.ports import free_port
from localdapr.testing import wait_until
from tests.unit.training.registry_fakes import MemoryRegistry, Published
from vigil.cli import main
from vigil.models import format_card, format_list, format_model

NAME = TURBOFAN.model_name


def card(version: int, rmse: float) -> ModelCard:
    digest = hashlib.sha256(str(version).encode()).hexdigest()
    return ModelCard(
        name=NAME,
        version=version,
        created_at=datetime(2026, 1, version, tzinfo=UTC),
        profile="turbofan",
        feature_names=["mean_sensor_2", "slope_sensor_2"],
        metrics={"rmse_capped": rmse, "phm08_score": 10 * rmse},
        training_data_fingerprint=digest,
        rul_cap=125.0,
        n_train_units=80,
        n_train_rows=16000,
        onnx_sha256=digest,
    )


@pytest.fixture
def training() -> Iterator[tuple[str, MemoryRegistry]]:
    """v1 champion by the gate, v2 refused by it, v3 promoted by it."""
    registry = MemoryRegistry()
    at = datetime(2026, 1, 3, tzinfo=UTC).isoformat()
    for version, rmse, champion in ((1, 14.0, None), (2, 15.0, 1), (3, 12.0, 1)):
        registry.models[version] = type("V", (), {"card": card(version, rmse), "onnx": b""})()  # type: ignore[assignment]
        numbers = None if champion is None else {"rmse_capped": 14.0, "phm08_score": 140.0}
        gate = decide(version, {"rmse_capped": rmse, "phm08_score": 10 * rmse}, champion, numbers)
        registry.decisions_[version] = gate.model_dump(mode="json")
        if gate.promoted:
            registry.history.append({"version": version, "previous": registry.champion, "action": "gate",
                                     "by": "job x", "note": "", "reason": gate.reason, "at": at})  # fmt: skip
            registry.champion = version
    published = Published()
    app = training_app.app
    app.state.service = TrainingService(registry, published, TURBOFAN)  # type: ignore[arg-type]
    app.state.catalog = ModelCatalog(registry, published, {p.model_name: p for p in PROFILES.values()})  # type: ignore[arg-type]
    app.state.tasks = set()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, 20, what="training app listening")
        yield f"http://127.0.0.1:{port}", registry
    finally:
        server.should_exit = True
        thread.join(10)


def test_list(training: tuple[str, MemoryRegistry], capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = training
    assert main(["models", "--url", url, "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["MODEL", "KIND", "CHAMPION", "VERSIONS", "LATEST"]
    row = next(line for line in lines if line.startswith(NAME)).split()
    assert row[:5] == [NAME, "rul", "3", "3", "3"]
    # the champion's numbers, the ones a rul model is judged by: capped RMSE 12, no uncapped rmse
    assert row[5:7] == ["rmse_capped=12,", "rmse=-,"]


def test_show(training: tuple[str, MemoryRegistry], capsys: pytest.CaptureFixture[str]) -> None:
    url, _ = training
    assert main(["models", "--url", url, "show", NAME]) == 0
    out = capsys.readouterr().out
    assert f"{NAME} (profile turbofan): champion 3" in out
    assert "kept champion" in out and "capped RMSE 15.000 is not below 13.720" in out
    assert "champion history:" in out and "feature drift: not measured yet" in out
    assert main(["models", "--url", url, "show", NAME, "--version", "2"]) == 0
    assert "turbofan-rul v2\n" in capsys.readouterr().out
    assert main(["models", "--url", url, "show", NAME, "--version", "7"]) == 1
    assert (
        capsys.readouterr().err == f"vigil models: error: {NAME} has no version 7 (registered: v1, v2, v3)\n"
    )
    assert main(["models", "--url", url, "show", "no-such-model"]) == 1
    assert "vigil models: error: no model 'no-such-model'; known: " in capsys.readouterr().err


def test_promote(training: tuple[str, MemoryRegistry], capsys: pytest.CaptureFixture[str]) -> None:
    url, registry = training
    assert main(["models", "--url", url, "promote", NAME, "2", "--by", "ann", "--note", "field test"]) == 0
    assert capsys.readouterr().out == f"{NAME}: champion v2 (was v3), promote by ann\n"
    assert registry.champion == 2 and registry.history[-1]["note"] == "field test"
    assert main(["models", "--url", url, "promote", NAME, "9"]) == 1
    assert (
        capsys.readouterr().err == f"vigil models: error: {NAME} has no version 9 (registered: v1, v2, v3)\n"
    )
    assert main(["models", "--url", url, "promote", NAME, "2"]) == 1
    assert f"{NAME} v2 is already the champion" in capsys.readouterr().err


def test_rollback(training: tuple[str, MemoryRegistry], capsys: pytest.CaptureFixture[str]) -> None:
    url, registry = training
    assert main(["models", "--url", url, "rollback", NAME, "--by", "ann"]) == 0
    assert capsys.readouterr().out == f"{NAME}: champion v1 (was v3), rollback by ann\n"
    assert main(["models", "--url", url, "rollback", NAME]) == 1
    assert "no earlier champion to roll back to (v1 was the first)" in capsys.readouterr().err
    assert main(["models", "--url", url, "rollback", NAME, "--to", "2"]) == 1
    assert f"{NAME} v2 has never been champion: promote it instead" in capsys.readouterr().err
    assert main(["models", "--url", url, "rollback", NAME, "--to", "3"]) == 0 and registry.champion == 3


def test_nothing_listening_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--url", f"http://127.0.0.1:{free_port()}", "list"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("vigil models: error: cannot connect to training at") and err.count("\n") == 1


def test_show_says_what_drift_was_measured_over(
    training: tuple[str, MemoryRegistry], capsys: pytest.CaptureFixture[str]
) -> None:
    url, registry = training
    at = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
    feature = FeatureDrift(name="mean_sensor_2", psi=0.31, level="significant")
    fed = DriftReport(model=NAME, version=3, computed_at=at, source="inference", rows=4180, machines=0,
                      since=datetime(2026, 11, 29, 14, 0, tzinfo=UTC), max_psi=0.31, level="significant",
                      features=[feature])  # fmt: skip
    registry.drift_ = fed.model_dump_json()
    assert main(["models", "--url", url, "show", NAME]) == 0
    out = capsys.readouterr().out
    assert (
        "feature drift of v3 (2026-11-30 02:00 UTC, 4180 rows inference predicted since 2026-11-29 14:00 UTC)"
        in out
    )
    assert (
        "max PSI 0.310 (significant); highest: mean_sensor_2 0.310" in out and "from the archive" not in out
    )
    why = "inference counted 12 rows of v3 since 2026-11-30 01:00 UTC, fewer than 100"
    archived = fed.model_copy(
        update={"source": "archive", "rows": 60, "machines": 3, "since": None, "fallback": why}
    )
    registry.drift_ = archived.model_dump_json()
    assert main(["models", "--url", url, "show", NAME]) == 0
    out = capsys.readouterr().out
    assert "60 rows of 3 machines in the archive" in out and f"(from the archive: {why})" in out
    assert "not measured" not in out
    registry.drift_ = archived.model_copy(update={"ignored": ["age_cycles"]}).model_dump_json()
    assert main(["models", "--url", url, "show", NAME]) == 0
    assert "(not measured, the model does not use them: age_cycles)" in capsys.readouterr().out


def test_a_failure_models_numbers_are_the_ones_its_gate_judges() -> None:
    milling = PROFILES["milling"]
    first = card(1, 0.0).model_copy(
        update={"name": milling.model_name, "profile": "milling", "kind": "failure",
                "metrics": {"roc_auc": 0.95, "f1": 0.6, "log_loss": 0.055, "threshold": 0.5}}
    )  # fmt: skip
    second = first.model_copy(update={"version": 2, "metrics": {"roc_auc": 0.9, "log_loss": 0.07}})
    rule = FAILURE_RULE
    gate = decide(2, second.metrics, 1, first.metrics, rule=rule)
    cards = [c.model_dump(mode="json") for c in (first, second)]
    listed = format_list([{"name": milling.model_name, "champion": 1, "versions": cards}])
    assert "failure" in listed and "roc_auc=0.95, f1=0.6, log_loss=0.055, threshold=0.5" in listed
    view = {"name": milling.model_name, "profile": "milling", "champion": 1, "versions": cards,
            "decisions": [gate.model_dump(mode="json")], "champion_history": [], "drift": None}  # fmt: skip
    shown = format_model(view)
    assert "LOG-LOSS" in shown and "ROC-AUC" in shown and "log-loss 0.0700 is not below 0.0539" in shown
    assert "kind failure" in format_card(cards[0], 1)
