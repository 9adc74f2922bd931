"""Ingestion without a sidecar: one actor call per machine per batch, bounded concurrency, failures and
bad readings reported and dead-lettered; the HTTP adapter's 400 / 413 / 422 answers.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from apps.common.contracts import EquipmentIngestResult, HealthSnapshot, Reading
from apps.common.names import TOPIC_READINGS_ACCEPTED, TOPIC_READINGS_DEAD_LETTER
from apps.common.profiles import PROFILES
from apps.common.publisher import json_safe
from apps.ingestion import app as ingestion_app
from apps.ingestion.service import IngestionService
from apps.ingestion.settings import get_settings
from tests.unit.ingestion.test_validation import NOW, good


class RecordingEquipment:
    """The EquipmentGateway: records each call, can fail some machines, measures calls in flight."""

    def __init__(
        self, failing: set[str] | None = None, hold: float = 0.0, too_late: set[int] | None = None
    ) -> None:
        self.calls: list[tuple[str, list[int]]] = []
        self.failing = failing or set()
        self.too_late = too_late or set()
        self.hold = hold
        self.in_flight = 0
        self.max_in_flight = 0

    async def ingest(self, equipment_id: str, readings: list[Reading]) -> EquipmentIngestResult:
        self.calls.append((equipment_id, [r.seq for r in readings]))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.hold)  # lets other machines' calls start, so overlap shows
            if equipment_id in self.failing:
                raise RuntimeError(f"actor {equipment_id} unavailable")
            health = HealthSnapshot(
                equipment_id=equipment_id,
                profile="turbofan",
                last_seq=max(r.seq for r in readings),
                readings_applied=len(readings),
                duplicates=0,
                status="ok",
                updated_at=datetime.now(UTC),
            )
            late = [r.seq for r in readings if r.seq in self.too_late]
            return EquipmentIngestResult(
                accepted=len(readings) - len(late), duplicates=0, too_late=late, health=health
            )
        finally:
            self.in_flight -= 1


class RecordingPublisher:
    def __init__(self, failing: set[str] | None = None) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.failing = failing or set()

    async def publish(self, topic: str, event: BaseModel | dict) -> None:
        if topic in self.failing:
            raise RuntimeError(f"pubsub down for {topic}")
        self.events.append((topic, event if isinstance(event, dict) else event.model_dump(mode="json")))

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [e for t, e in self.events if t == topic]

    def archived(self) -> list[tuple[str, int]]:
        return [
            (r["equipment_id"], r["seq"]) for e in self.on(TOPIC_READINGS_ACCEPTED) for r in e["readings"]
        ]


def service(
    equipment: RecordingEquipment, publisher: RecordingPublisher, limit: int = 32
) -> IngestionService:
    return IngestionService(equipment, publisher, PROFILES, limit)


async def test_one_call_per_machine_with_its_readings_in_order_and_bad_ones_dead_lettered() -> None:
    equipment, publisher = RecordingEquipment(), RecordingPublisher()
    batch = [good(seq=s, eq=f"m{m}") for s in range(4) for m in range(3)]
    batch.insert(5, good(seq=99, eq="bad id!"))
    result = await service(equipment, publisher).ingest(batch, source="http", now=NOW)
    assert result.accepted == 12 and set(result.health) == {"m0", "m1", "m2"}
    assert sorted(equipment.calls) == [("m0", [0, 1, 2, 3]), ("m1", [0, 1, 2, 3]), ("m2", [0, 1, 2, 3])]
    assert [(r.index, "equipment_id" in r.reason) for r in result.rejected] == [(5, True)]
    assert [(e["index"], e["reading"]["seq"]) for e in publisher.on(TOPIC_READINGS_DEAD_LETTER)] == [(5, 99)]
    # every reading the actors took goes to the archiver, in one message
    assert len(publisher.on(TOPIC_READINGS_ACCEPTED)) == 1
    assert sorted(publisher.archived()) == sorted((f"m{m}", s) for s in range(4) for m in range(3))


async def test_actor_calls_run_concurrently_but_within_the_limit() -> None:
    equipment, publisher = RecordingEquipment(hold=0.02), RecordingPublisher()
    batch = [good(seq=0, eq=f"m{m}") for m in range(12)]
    result = await service(equipment, publisher, limit=3).ingest(batch, source="http", now=NOW)
    assert result.accepted == 12
    assert equipment.max_in_flight == 3


async def test_a_failing_actor_asks_for_its_readings_again_and_spares_the_others() -> None:
    equipment, publisher = RecordingEquipment(failing={"m1"}), RecordingPublisher()
    batch = [good(seq=s, eq=f"m{m}") for s in range(2) for m in range(3)]
    result = await service(equipment, publisher).ingest(batch, source="pubsub", now=NOW)
    assert result.accepted == 4 and set(result.health) == {"m0", "m2"}
    failed = {r.index for r in result.rejected}
    assert failed == {i for i, item in enumerate(batch) if item["equipment_id"] == "m1"}
    assert all(r.retryable and "retry" in r.reason and "m1 unavailable" in r.reason for r in result.rejected)
    assert publisher.on(TOPIC_READINGS_DEAD_LETTER) == []  # they will be sent again: not dead letters
    assert sorted(publisher.archived()) == [("m0", 0), ("m0", 1), ("m2", 0), ("m2", 1)]  # not m1's


async def test_too_late_readings_are_reported_and_dead_lettered() -> None:
    equipment, publisher = RecordingEquipment(too_late={1}), RecordingPublisher()
    batch = [good(seq=s, eq="m0") for s in range(3)]
    result = await service(equipment, publisher).ingest(batch, source="http", now=NOW)
    assert result.accepted == 2
    assert [(r.index, r.retryable, r.reason.split(":")[0]) for r in result.rejected] == [
        (1, False, "too_late")
    ]
    assert [(e["index"], e["reading"]["seq"]) for e in publisher.on(TOPIC_READINGS_DEAD_LETTER)] == [(1, 1)]
    assert publisher.archived() == [("m0", 0), ("m0", 2)]  # a refused reading is not archived


async def test_the_archive_hand_off_is_split_and_a_failed_one_asks_for_the_readings_again() -> None:
    equipment = RecordingEquipment()
    batch = [good(seq=s, eq=f"m{m}") for s in range(300) for m in range(8)]  # 2,400 readings
    ok = RecordingPublisher()
    result = await service(equipment, ok).ingest(batch, source="http", now=NOW)
    assert result.accepted == 2400 and result.rejected == []
    assert [len(e["readings"]) for e in ok.on(TOPIC_READINGS_ACCEPTED)] == [1000, 1000, 400]
    assert sorted(ok.archived()) == sorted((f"m{m}", s) for s in range(300) for m in range(8))

    down = RecordingPublisher(failing={TOPIC_READINGS_ACCEPTED})
    result = await service(RecordingEquipment(), down).ingest(batch[:10], source="http", now=NOW)
    assert result.accepted == 10  # applied to the machines' state ...
    assert [r.index for r in result.rejected] == list(range(10))  # ... but to be sent again
    assert all(
        r.retryable and r.reason.startswith("applied but not archived, retry") for r in result.rejected
    )


@pytest.fixture
def http() -> Iterator[tuple[TestClient, RecordingEquipment]]:
    """The FastAPI app without its lifespan (which needs a sidecar)."""
    equipment = RecordingEquipment()
    ingestion_app.app.state.service = service(equipment, RecordingPublisher())
    yield TestClient(ingestion_app.app), equipment
    del ingestion_app.app.state.service


def test_http_malformed_json_too_large_and_all_rejected(http: tuple[TestClient, RecordingEquipment]) -> None:
    client, equipment = http
    json_type = {"content-type": "application/json"}
    malformed = client.post("/v1/readings", content=b'[{"equipment_id": ', headers=json_type)
    assert malformed.status_code == 400 and "malformed JSON" in malformed.json()["detail"]
    limit = get_settings().max_body_bytes
    too_big = client.post("/v1/readings", content=b" " * (limit + 1), headers=json_type)
    assert too_big.status_code == 413 and f"exceeds the limit of {limit} bytes" in too_big.json()["detail"]
    all_bad = client.post("/v1/readings", json=[good(seq=1, eq="no spaces allowed")])
    assert all_bad.status_code == 422 and all_bad.json()["rejected"][0]["index"] == 0
    assert equipment.calls == []
    ok = client.post("/v1/readings", json=[good(seq=1, timestamp=datetime.now(UTC).isoformat())])
    assert ok.status_code == 200 and ok.json()["accepted"] == 1


def test_http_503_with_retry_after_when_no_machine_could_be_reached(
    http: tuple[TestClient, RecordingEquipment],
) -> None:
    client, equipment = http
    equipment.failing = {"m0", "m1"}
    now = datetime.now(UTC).isoformat()
    down = client.post(
        "/v1/readings", json=[good(seq=1, eq="m0", timestamp=now), good(seq=1, eq="m1", timestamp=now)]
    )
    assert down.status_code == 503 and down.headers["retry-after"] == "1"
    assert [r["retryable"] for r in down.json()["rejected"]] == [True, True]
    partly = client.post(
        "/v1/readings", json=[good(seq=2, eq="m0", timestamp=now), good(seq=2, eq="m2", timestamp=now)]
    )
    assert partly.status_code == 200 and partly.json()["accepted"] == 1
    assert [(r["index"], r["retryable"]) for r in partly.json()["rejected"]] == [(0, True)]


def test_http_lists_the_profiles_as_their_files_say(http: tuple[TestClient, RecordingEquipment]) -> None:
    client, _ = http
    answer = client.get("/v1/profiles")
    assert answer.status_code == 200
    by_name = {p["name"]: p for p in answer.json()}
    assert sorted(by_name) == ["milling", "turbofan", "turbofan-anomaly"]
    turbofan = by_name["turbofan"]
    assert turbofan["model"] == {"name": "turbofan-rul", "kind": "rul"} and turbofan["window"] == 60
    assert turbofan["channels"]["op_setting_1"]["max"] == 45.0
    assert turbofan["alerts"] == {"warning_rul": 50, "critical_rul": 20, "consecutive": 3, "clear_margin": 10}
    assert by_name["milling"]["alerts"]["warning_probability"] == 0.5


def test_a_dead_letter_carries_non_finite_values_as_text_so_it_stays_standard_json() -> None:
    raw = {"equipment_id": "a", "values": {"s1": math.inf, "s2": -math.inf, "s3": math.nan, "s4": 1.5}}
    safe = json_safe([raw, 2, "x"])
    assert safe == [
        {"equipment_id": "a", "values": {"s1": "inf", "s2": "-inf", "s3": "nan", "s4": 1.5}},
        2,
        "x",
    ]
    json.dumps(safe, allow_nan=False)  # raises on any non-finite number left


def test_the_readings_accepted_message_is_the_json_of_the_readings_as_before() -> None:
    """Written by pydantic in one pass now (was: dumped to dicts, then json.dumps): the same document."""
    from apps.common.publisher import event_json
    from apps.ingestion.service import _READINGS, _accepted

    readings = [Reading.model_validate(good(seq=s, eq=f"m.{s % 2}")) for s in range(3)]
    assert json.loads(event_json(_accepted(readings))) == json.loads(
        json.dumps({"readings": _READINGS.dump_python(readings, mode="json")})
    )
