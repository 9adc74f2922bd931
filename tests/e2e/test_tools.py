"""`vigil replay` into the real platform (every app with its localdapr sidecar, embedded profile):
two FD001 units for 40 cycles reach their EquipmentActors, which apply every reading and predict."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from dapr.actor import ActorId, ActorProxy

from apps.common.actor_interface import EquipmentActorInterface
from apps.common.names import EQUIPMENT_ACTOR_TYPE
from tests.e2e.platform import Platform, running_platform, write_components
from vigil.cli import main

pytestmark = pytest.mark.e2e

CYCLES = 40  # past the 30-reading window, so the actors compute features and call inference


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("e2e-tools")
    components = write_components(tmp / "components", "embedded")
    env = {"VIGIL_TRAINING_N_ESTIMATORS": "60", "VIGIL_EQUIPMENT_HEALTH_PUBLISH_SECONDS": "0"}
    with running_platform(components, tmp, env) as p:
        yield p


async def health(equipment_id: str) -> dict[str, Any]:
    proxy = ActorProxy.create(EQUIPMENT_ACTOR_TYPE, ActorId(equipment_id), EquipmentActorInterface)
    return json.loads(await proxy.GetHealth())


async def test_replay_reaches_the_actors(
    platform: Platform, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = f"replay-{uuid.uuid4().hex[:6]}-"
    argv = ["replay", "--units", "1-2", "--cycles", str(CYCLES), "--speed", "0", "--batch", "16"]
    argv += ["--prefix", prefix, "--url", platform.url("ingestion")]
    code = main(argv)
    out = capsys.readouterr().out
    assert code == 0, platform.logs()
    assert f"accepted {2 * CYCLES}, duplicates 0, rejected 0" in out

    monkeypatch.setenv("DAPR_HTTP_PORT", str(platform.apps["equipment"].sidecar.http_port))
    for unit in (1, 2):
        h = await health(f"{prefix}{unit:03d}")
        assert h["readings_applied"] == CYCLES and h["last_seq"] == CYCLES
        assert h["duplicates"] == 0
        assert h["predicted_rul"] is not None and not h["prediction_stale"], h
        assert h["status"] == "ok", h  # 40 cycles into a 190+ cycle life: healthy

    # replaying the same cycles again changes nothing: the actors count them as duplicates
    assert main(argv) == 0
    assert f"accepted 0, duplicates {2 * CYCLES}" in capsys.readouterr().out
    for unit in (1, 2):
        h = await health(f"{prefix}{unit:03d}")
        assert h["readings_applied"] == CYCLES and h["duplicates"] == CYCLES
