"""ActorEquipmentGateway calls the EquipmentActor with the very requests the SDK's RPC-style proxy
sends (`proxy.Ingest(...)`), and reads its answers as that proxy does; only the HTTP send is faked."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from dapr.actor import ActorId
from dapr.clients.health import DaprHealth

from apps.common.actor_interface import EquipmentActorInterface
from apps.common.contracts import EquipmentEvent, EquipmentIngestResult, HealthSnapshot, Reading
from apps.common.names import EQUIPMENT_ACTOR_TYPE
from apps.ingestion.app import ActorEquipmentGateway
from apps.ingestion.service import readings_json
from tests.unit.ingestion.test_validation import good

HEALTH = HealthSnapshot(
    equipment_id="engine-1",
    profile="turbofan",
    last_seq=4,
    readings_applied=5,
    duplicates=0,
    status="ok",
    updated_at=datetime(2026, 1, 1, tzinfo=UTC),
)


class FakeSidecar:
    """The pooled HTTP client's send: records each request, answers as the sidecar relays an actor."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, str, bytes | None]] = []
        self.answer: str = ""
        self.error: Exception | None = None

    async def send_bytes(self, method: str, url: str, data: bytes | None, **_: Any) -> tuple[bytes, None]:
        self.sent.append((method, url, data))
        if self.error is not None:
            raise self.error
        return json.dumps(self.answer).encode(), None  # the actor's str result, JSON-encoded by its SDK


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ActorEquipmentGateway, FakeSidecar]]:
    monkeypatch.setattr(DaprHealth, "wait_for_sidecar", staticmethod(lambda: None))  # no sidecar here
    gw = ActorEquipmentGateway()
    sidecar = FakeSidecar()
    monkeypatch.setattr(gw.factory._dapr_client._client, "send_bytes", sidecar.send_bytes)  # type: ignore[attr-defined]
    yield gw, sidecar


async def test_ingest_sends_what_the_rpc_style_proxy_sends_and_reads_its_answer(gateway) -> None:  # noqa: ANN001
    gw, sidecar = gateway
    readings = [Reading.model_validate(good(seq=s, eq="engine-1")) for s in (3, 4)]
    expected = EquipmentIngestResult(accepted=2, duplicates=0, too_late=[], health=HEALTH)
    sidecar.answer = expected.model_dump_json()

    got = await gw.ingest("engine-1", readings)
    proxy = gw.factory.create(EQUIPMENT_ACTOR_TYPE, ActorId("engine-1"), EquipmentActorInterface)
    rpc_answer = await proxy.Ingest(readings_json(readings))

    assert got == expected
    assert EquipmentIngestResult.model_validate_json(rpc_answer) == expected
    ours, theirs = sidecar.sent
    assert ours == theirs
    assert ours[1].endswith(f"/actors/{EQUIPMENT_ACTOR_TYPE}/engine-1/method/Ingest")
    assert json.loads(json.loads(ours[2])) == json.loads(readings_json(readings))


async def test_last_seq_and_start_life_send_what_the_rpc_style_proxy_sends(gateway) -> None:  # noqa: ANN001
    gw, sidecar = gateway
    sidecar.answer = HEALTH.model_dump_json()
    assert await gw.last_seq("engine-1") == 4
    proxy = gw.factory.create(EQUIPMENT_ACTOR_TYPE, ActorId("engine-1"), EquipmentActorInterface)
    await proxy.GetHealth()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    event = EquipmentEvent(
        equipment_id="engine-1",
        kind="failure",
        seq=4,
        timestamp=at,
        note="bearing ✗",
        source="api",
        recorded_at=at,
    )
    sidecar.answer = json.dumps({"known": True, "applied": True, "life": 1})
    await gw.start_life(event)
    await proxy.StartLife(json.dumps({"kind": "failure", "seq": 4, "note": "bearing ✗"}))
    health_ours, health_theirs, start_ours, start_theirs = sidecar.sent
    assert health_ours == health_theirs and health_ours[2] is None
    assert start_ours == start_theirs and start_ours[1].endswith("/method/StartLife")


async def test_a_machine_that_never_sent_a_reading_has_no_last_seq(gateway) -> None:  # noqa: ANN001
    gw, sidecar = gateway
    sidecar.error = RuntimeError("engine-9 has sent no readings")
    assert await gw.last_seq("engine-9") is None
    sidecar.error = RuntimeError("sidecar unavailable")
    with pytest.raises(RuntimeError, match="unavailable"):
        await gw.last_seq("engine-9")
