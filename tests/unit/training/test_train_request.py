"""`POST /v1/train`: a strict body (profile, kind, source, dataset, force, note); a junk body or an
impossible combination is a 422 naming the problem and starts no job."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from apps.training import app as training_app
from apps.training.jobs import TrainingJob
from apps.training.jobstore import JobBook


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
    training_app.app.state.book = JobBook(service.jobs, None, keep=200, save_seconds=1.0)  # memory only
    yield TestClient(training_app.app), service
    del training_app.app.state.service, training_app.app.state.tasks, training_app.app.state.book


@pytest.mark.parametrize(
    "body",
    [{"n_estimators": 5}, [1, 2], "train please", 42, {"source": "files"}, {"force": "yes please"}],
)
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


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"profile": "toaster"}, "unknown profile 'toaster'; known: milling, turbofan, turbofan-anomaly"),
        ({"profile": "turbofan", "kind": "failure"}, "profile 'turbofan' uses a 'rul' model, not 'failure'"),
        ({"kind": "anomaly"}, "'kind' needs the 'profile' whose model it is"),
        ({"profile": "milling", "source": "dataset", "dataset": "FD001"}, "FD001 has no"),
        ({"profile": "turbofan", "source": "dataset", "dataset": "AI4I2020"}, "AI4I2020 has no sensor_2"),
        ({"dataset": "FD002"}, "'dataset' names a file for source 'dataset'; the archive needs none"),
    ],
)
def test_an_impossible_request_is_a_422_that_says_why(
    api: tuple[TestClient, RecordingService], body: dict[str, str], says: str
) -> None:
    client, service = api
    answer = client.post("/v1/train", json=body)
    assert answer.status_code == 422 and says in answer.text and service.started == []


def test_a_full_request_starts_a_job_that_shows_it(api: tuple[TestClient, RecordingService]) -> None:
    client, service = api
    body = {"profile": "turbofan", "kind": "rul", "source": "dataset", "dataset": "FD002", "force": True}
    answer = client.post("/v1/train", json={**body, "note": "FD002 history"})
    assert answer.status_code == 202 and service.started == [answer.json()["id"]]
    job = client.get(answer.headers["location"]).json()
    assert job["status"] == "queued" and job["request"] == {**body, "note": "FD002 history"}
    assert client.get("/v1/jobs/nope").status_code == 404
