"""`POST /v1/train` takes an empty object or no body: a junk body is a 422 and starts no job."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from apps.training import app as training_app
from apps.training.service import TrainingJob


class RecordingService:
    def __init__(self) -> None:
        self.started: list[str] = []
        self.jobs: dict[str, TrainingJob] = {}

    async def run(self, job: TrainingJob) -> TrainingJob:
        self.started.append(job.id)
        return job


@pytest.fixture
def api() -> Iterator[tuple[TestClient, RecordingService]]:
    service = RecordingService()
    training_app.app.state.service = service
    training_app.app.state.tasks = set()
    yield TestClient(training_app.app), service
    del training_app.app.state.service, training_app.app.state.tasks


@pytest.mark.parametrize("body", [{"n_estimators": 5}, [1, 2], "train please", 42])
def test_a_junk_body_is_a_422_and_starts_no_job(
    api: tuple[TestClient, RecordingService], body: object
) -> None:
    client, service = api
    answer = client.post("/v1/train", json=body)
    assert answer.status_code == 422
    assert service.started == []


def test_a_non_json_body_is_a_415_and_starts_no_job(api: tuple[TestClient, RecordingService]) -> None:
    client, service = api
    answer = client.post("/v1/train", content=b"go", headers={"content-type": "text/plain"})
    assert answer.status_code == 415 and service.started == []


@pytest.mark.parametrize("body", [None, {}])
def test_no_body_or_an_empty_object_starts_a_job(
    api: tuple[TestClient, RecordingService], body: object
) -> None:
    client, service = api
    answer = client.post("/v1/train", json=body) if body is not None else client.post("/v1/train")
    assert answer.status_code == 202 and answer.headers["location"] == f"/v1/jobs/{answer.json()['id']}"
