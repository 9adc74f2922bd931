"""Hostile input to ingestion answered with a 4xx or a named rejection, never a 500 or a silent drop:
one test per case, through the HTTP adapter over recording fakes (no sidecar)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient

from apps.common.contracts import EquipmentIngestResult, Reading
from apps.common.names import TOPIC_READINGS_DEAD_LETTER
from apps.ingestion import app as ingestion_app
from apps.ingestion.events import EventService
from tests.unit.ingestion.test_events import FakeArchive, FakeMachines
from tests.unit.ingestion.test_ingestion_service import RecordingEquipment, RecordingPublisher, service
from tests.unit.ingestion.test_validation import good

JSON = {"content-type": "application/json"}


class JumpyEquipment(RecordingEquipment):
    """An actor that refuses seqs at or above `limit` as too far ahead (what EquipmentActor does)."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    async def ingest(self, equipment_id: str, readings: list[Reading]) -> EquipmentIngestResult:
        taken = [r for r in readings if r.seq < self.limit]
        result = await super().ingest(equipment_id, taken or readings[:1])
        far = [r.seq for r in readings if r.seq >= self.limit]
        return result.model_copy(update={"accepted": len(taken), "too_far": far})


@pytest.fixture
def http() -> Iterator[tuple[TestClient, RecordingEquipment, RecordingPublisher]]:
    equipment, publisher = JumpyEquipment(limit=1000), RecordingPublisher()
    ingestion_app.app.state.service = service(equipment, publisher)
    ingestion_app.app.state.events = EventService(FakeMachines({}), FakeArchive())
    yield TestClient(ingestion_app.app), equipment, publisher
    del ingestion_app.app.state.service, ingestion_app.app.state.events


def now() -> str:
    return datetime.now(UTC).isoformat()


def test_deeply_nested_json_is_a_400_not_a_recursion_error(http) -> None:  # noqa: ANN001
    client, equipment, _ = http
    answer = client.post("/v1/readings", content=b"[" * 100_000 + b"]" * 100_000, headers=JSON)
    assert answer.status_code == 400 and "nested deeper" in answer.json()["detail"]
    assert equipment.calls == []


def test_a_text_plain_body_is_a_415(http) -> None:  # noqa: ANN001
    client, equipment, _ = http
    answer = client.post("/v1/readings", content=b'[{"seq": 1}]', headers={"content-type": "text/plain"})
    assert answer.status_code == 415
    assert equipment.calls == []


@pytest.mark.parametrize("seq", [str(2**70), "1" + "0" * 400])
def test_a_huge_seq_is_rejected_naming_the_field(http, seq: str) -> None:  # noqa: ANN001
    client, equipment, _ = http
    body = '[{"equipment_id": "e1", "timestamp": "%s", "seq": %s, "values": {"sensor_2": 641.0}}]'
    answer = client.post("/v1/readings", content=(body % (now(), seq)).encode(), headers=JSON)
    assert answer.status_code == 422 and "bad seq" in answer.json()["rejected"][0]["reason"]
    assert equipment.calls == []


def test_a_seq_too_far_ahead_is_rejected_with_a_reason_and_dead_lettered(http) -> None:  # noqa: ANN001
    client, _, publisher = http
    answer = client.post("/v1/readings", json=[good(seq=1, timestamp=now()), good(seq=5000, timestamp=now())])
    assert answer.status_code == 200 and answer.json()["accepted"] == 1
    [rejection] = answer.json()["rejected"]
    assert rejection["index"] == 1 and rejection["reason"].startswith("too_far: seq 5000")
    assert [e["reading"]["seq"] for e in publisher.on(TOPIC_READINGS_DEAD_LETTER)] == [5000]
    assert publisher.archived() == [("engine-1", 1)]


@pytest.mark.parametrize("equipment_id", ["..", ".", "a||b", "a/b", "a\x07b", "x" * 10_000])
def test_ids_that_would_become_keys_or_paths_never_reach_an_actor(http, equipment_id: str) -> None:  # noqa: ANN001
    client, equipment, _ = http
    answer = client.post("/v1/readings", json=[good(seq=1, eq=equipment_id, timestamp=now())])
    assert answer.status_code == 422 and "bad equipment_id" in answer.json()["rejected"][0]["reason"]
    assert equipment.calls == []


@pytest.mark.parametrize("equipment_id", ["..", "a%7C%7Cb", "%2E", "x" * 10_000])
def test_event_ids_that_would_become_file_names_are_refused(http, equipment_id: str) -> None:  # noqa: ANN001
    client, _, _ = http
    answer = client.post(f"/v1/equipment/{equipment_id}/events", json={"kind": "failure", "seq": 1})
    assert 400 <= answer.status_code < 500
    assert client.get(f"/v1/equipment/{equipment_id}/events").status_code in (404, 422)


def test_a_timestamp_from_before_1970_is_rejected(http) -> None:  # noqa: ANN001
    client, equipment, _ = http
    answer = client.post("/v1/readings", json=[good(seq=1, timestamp="1900-01-01T00:00:00Z")])
    assert answer.status_code == 422 and "1970" in answer.json()["rejected"][0]["reason"]
    assert equipment.calls == []
