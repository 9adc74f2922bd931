"""A machine view follows the promotions of the model whose card holds its thresholds (anomaly)."""

from __future__ import annotations

import asyncio

from apps.common.registry import ModelUpdate
from apps.dashboard.domain import HistoryPoint, RegisteredModelInfo
from apps.dashboard.service import DashboardService
from apps.dashboard.settings import DashboardSettings
from tests.unit.dashboard.fakes import FakeBackend, card, snapshot


def anomaly_backend() -> FakeBackend:
    backend = FakeBackend()
    backend.snapshots = {
        "tfa-1": snapshot("tfa-1", status="ok", rul=0.4, seq=9, profile="turbofan-anomaly"),
        "tf-1": snapshot("tf-1", status="ok", rul=90, seq=9),
    }
    backend.histories = {"tfa-1": [HistoryPoint(seq=9, at=9.0, predicted_rul=0.4, model_version=1)]}
    versions = [
        card(v, 0.0, name="turbofan-anomaly").model_copy(
            update={"alert_thresholds": {"warning": w, "critical": w + 0.1}}
        )
        for v, w in ((1, 0.5), (2, 0.6))
    ]
    backend.models = [RegisteredModelInfo(name="turbofan-anomaly", champion=1, versions=versions)]
    backend.loaded = {"turbofan-anomaly": 1}
    return backend


async def test_a_promotion_brings_the_new_versions_thresholds_and_nothing_else_does() -> None:
    service = DashboardService(DashboardSettings(), backend_=anomaly_backend())
    view = await service.machine("tfa-1")
    assert view.to_json()["thresholds"] == {"warning": 0.5, "critical": 0.6, "clear": 0.5}

    registered = ModelUpdate(name="turbofan-anomaly", version=2, promoted=False)  # the gate refused it
    assert not await service.follow_model(view, registered)
    other = ModelUpdate(name="turbofan-rul", version=2, promoted=True)
    assert not await service.follow_model(view, other)
    unknown = ModelUpdate(name="turbofan-anomaly", version=9, promoted=True)  # not in the registry
    assert not await service.follow_model(view, unknown)
    assert view.to_json()["thresholds"]["warning"] == 0.5

    promoted = ModelUpdate(name="turbofan-anomaly", version=2, promoted=True)
    assert await service.follow_model(view, promoted)
    assert view.to_json()["thresholds"] == {"warning": 0.6, "critical": 0.7, "clear": 0.6}
    assert not await service.follow_model(view, promoted)  # the same again: nothing to redraw

    rollback = ModelUpdate(name="turbofan-anomaly", version=1, promoted=True)
    assert await service.follow_model(view, rollback)
    assert view.to_json()["thresholds"]["warning"] == 0.5


async def test_a_rul_machine_ignores_model_updates() -> None:
    service = DashboardService(DashboardSettings(), backend_=anomaly_backend())
    view = await service.machine("tf-1")
    before = view.to_json()["thresholds"]
    assert not await service.follow_model(view, ModelUpdate(name="turbofan-rul", version=2, promoted=True))
    assert view.to_json()["thresholds"] == before


async def test_every_open_page_of_a_promoted_model_costs_one_registry_read() -> None:
    backend = anomaly_backend()
    service = DashboardService(DashboardSettings(), backend_=backend)
    views = [await service.machine("tfa-1") for _ in range(20)]  # twenty pages open on its machines
    promoted = ModelUpdate(name="turbofan-anomaly", version=2, promoted=True)
    backend.down = True  # training is away: the lines stay, and the failure is not kept
    assert not await service.follow_model(views[0], promoted)
    backend.down = False
    backend.calls.clear()
    assert all(await asyncio.gather(*(service.follow_model(v, promoted) for v in views)))
    assert backend.calls.count("registered_models") == 1
    assert {v.to_json()["thresholds"]["warning"] for v in views} == {0.6}
