"""POST/GET /v1/equipment/{id}/events without a sidecar: strict bodies, 4xx naming the field, the seq
taken from the machine when left out, 503 when the archive or the actor cannot be reached."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from apps.common.contracts import EquipmentEvent
from apps.ingestion import app as ingestion_app
from apps.ingestion.events import EventService


class FakeMachines:
    def __init__(self, last: dict[str, int]) -> None:
        self.last = last
        self.down = False
        self.lives: list[tuple[str, str, int]] = []  # the StartLife calls: (machine, kind, seq)

    async def last_seq(self, equipment_id: str) -> int | None:
        if self.down:
            raise RuntimeError("actor host unreachable")
        return self.last.get(equipment_id)

    async def start_life(self, event: EquipmentEvent) -> None:
        if self.down:
            raise RuntimeError("actor host unreachable")
        self.lives.append((event.equipment_id, event.kind, event.seq))


class FakeArchive:
    def __init__(self) -> None:
        self.files: dict[str, EquipmentEvent] = {}
        self.down = False

    async def write_event(self, event: EquipmentEvent) -> str:
        if self.down:
            raise RuntimeError("binding archive unavailable")
        path = f"events/{event.equipment_id}/{event.seq:012d}-{event.kind}.json"
        self.files[path] = event
        return path

    async def events(self, equipment_id: str | None = None) -> list[EquipmentEvent]:
        return [e for p, e in sorted(self.files.items()) if equipment_id in (None, e.equipment_id)]


@pytest.fixture
def api() -> Iterator[tuple[TestClient, FakeMachines, FakeArchive]]:
    machines, archive = FakeMachines({"eng-1": 191}), FakeArchive()
    ingestion_app.app.state.events = EventService(machines, archive)
    yield TestClient(ingestion_app.app), machines, archive
    del ingestion_app.app.state.events


def test_a_failure_is_kept_and_listed(api) -> None:  # noqa: ANN001
    client, machines, archive = api
    answer = client.post("/v1/equipment/eng-1/events", json={"kind": "failure", "seq": 192, "note": "HPC"})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["equipment_id"], body["kind"], body["seq"], body["source"]) == (
        "eng-1",
        "failure",
        192,
        "api",
    )
    assert body["timestamp"] == body["recorded_at"]  # no timestamp given: when it was recorded
    assert list(archive.files) == ["events/eng-1/000000000192-failure.json"]
    again = client.post("/v1/equipment/eng-1/events", json={"kind": "failure", "seq": 192})
    assert again.status_code == 201 and len(archive.files) == 1  # the same event twice: one file
    # The actor was told both times (after the archive kept it); it applies an event once.
    assert machines.lives == [("eng-1", "failure", 192)] * 2
    listed = client.get("/v1/equipment/eng-1/events").json()
    assert [(e["kind"], e["seq"]) for e in listed] == [("failure", 192)]
    assert client.get("/v1/equipment/other/events").json() == []


def test_without_a_seq_the_event_follows_the_last_reading(api) -> None:  # noqa: ANN001
    client, _, _ = api
    answer = client.post(
        "/v1/equipment/eng-1/events", json={"kind": "maintenance", "timestamp": "2024-05-01T08:00:00+02:00"}
    )
    assert answer.status_code == 201 and answer.json()["seq"] == 191
    assert answer.json()["timestamp"] == "2024-05-01T08:00:00+02:00"
    never = client.post("/v1/equipment/eng-9/events", json={"kind": "replaced"})
    assert never.status_code == 409 and never.json()["detail"].startswith(
        "seq: equipment 'eng-9' has sent no"
    )


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ('{"kind": "broken", "seq": 3}', 422, "kind: Input should be 'failure', 'maintenance' or 'replaced'"),
        ('{"kind": "failure", "seq": "3"}', 422, "seq: Input should be a valid integer"),
        ('{"kind": "failure", "seq": -1}', 422, "seq: Input should be greater than or equal to 0"),
        ('{"seq": 3}', 422, "missing field 'kind'"),
        ('{"kind": "failure", "sq": 3}', 422, "unexpected field 'sq'"),
        (
            '{"kind": "failure", "timestamp": "2024-05-01T08:00:00"}',
            422,
            "timestamp: timestamp must be timezone-aware",
        ),
        ('{"kind": "failure", "note": 5}', 422, "note: Input should be a valid string"),
        ('["failure"]', 422, "the body must be a JSON object, got list"),
        ('{"kind": ', 400, "malformed JSON"),
        # Bytes that are no text at all (found by the API fuzz test: it was a 503 "retry").
        (b"4\x83\xd9f\xc2\xadA\x04", 400, "malformed JSON: not UTF-8"),
    ],
)
def test_a_bad_body_is_a_4xx_naming_the_field(api, body: str | bytes, status: int, detail: str) -> None:  # noqa: ANN001
    client, _, archive = api
    answer = client.post(
        "/v1/equipment/eng-1/events", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == status and detail in answer.json()["detail"], answer.text
    assert archive.files == {}


def test_a_bad_equipment_id_is_refused(api) -> None:  # noqa: ANN001
    client, _, _ = api
    answer = client.post("/v1/equipment/bad id!/events", json={"kind": "failure", "seq": 1})
    assert answer.status_code == 422 and answer.json()["detail"].startswith("equipment_id 'bad id!'")


def test_an_unreachable_archive_or_actor_is_a_503_to_retry(api) -> None:  # noqa: ANN001
    client, machines, archive = api
    archive.down = True
    answer = client.post("/v1/equipment/eng-1/events", json={"kind": "failure", "seq": 192})
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
    assert "binding archive unavailable" in answer.json()["detail"]
    archive.down, machines.down = False, True
    assert client.post("/v1/equipment/eng-1/events", json={"kind": "failure"}).status_code == 503
    # With a seq it is archived, but the actor has not started the new life: 503 all the same, and the
    # retry (the same file again, the actor's call again) completes it.
    assert client.post("/v1/equipment/eng-1/events", json={"kind": "failure", "seq": 5}).status_code == 503
    assert machines.lives == []
    machines.down = False
    assert client.post("/v1/equipment/eng-1/events", json={"kind": "failure", "seq": 5}).status_code == 201
    assert machines.lives == [("eng-1", "failure", 5)] and len(archive.files) == 1


def test_an_event_dated_in_the_future_is_refused_and_never_archived(api) -> None:  # noqa: ANN001
    """A failure "in 2100" is a typo or a forgery, and a label training would trust: 422, nothing kept."""
    client, _, archive = api
    ahead = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    for timestamp in ("2100-01-01T00:00:00Z", ahead):
        answer = client.post(
            "/v1/equipment/eng-1/events", json={"kind": "failure", "seq": 5, "timestamp": timestamp}
        )
        assert answer.status_code == 422 and "in the future" in answer.json()["detail"], answer.text
    assert archive.files == {}
    near = (datetime.now(UTC) + timedelta(seconds=30)).isoformat()  # a clock a little ahead: accepted
    assert (
        client.post(
            "/v1/equipment/eng-1/events", json={"kind": "failure", "seq": 5, "timestamp": near}
        ).status_code
        == 201
    )


def test_an_event_far_past_the_last_reading_is_refused_and_never_archived(api) -> None:  # noqa: ANN001
    """A typo such as seq 1000000192 would make every later reading the old life's: 422, nothing kept."""
    client, machines, archive = api
    ingestion_app.app.state.events = EventService(machines, archive, max_seq_ahead=1000)
    answer = client.post("/v1/equipment/eng-1/events", json={"kind": "maintenance", "seq": 1192})
    assert answer.status_code == 422 and "more than 1000 past the last reading" in answer.json()["detail"]
    assert archive.files == {} and machines.lives == []
    assert (
        client.post("/v1/equipment/eng-1/events", json={"kind": "maintenance", "seq": 1191}).status_code
        == 201
    )
    # A machine that never sent a reading: nothing to compare with (the actor keeps no life for it).
    assert (
        client.post("/v1/equipment/new-1/events", json={"kind": "replaced", "seq": 10**9}).status_code == 201
    )
