"""Property-based fuzzing of every app's and the gateway's API from its own OpenAPI description
(schemathesis): generated requests, valid and invalid, to every operation, and not one answer may be a
5xx or disagree with the documented schema of its status.

Each app runs in process over the same in-memory fakes as its unit tests (no sidecar), so a 5xx can
only be the app's own failure. Bounded: a few examples per operation, derandomized (the same cases on
every run), about 20 s for all of them. Left out: the dashboard (importing it mounts NiceGUI in this
process, see test_offline_docs.py) and the equipment app's /actors routes (only its sidecar may call
them; app tokens are what will refuse anyone else).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance

from apps.common.asgi import Receive, Scope, Send
from apps.common.contracts import ModelCard
from apps.common.names import INFERENCE_APP_ID, INGESTION_APP_ID, TRAINING_APP_ID
from apps.common.profiles import PROFILES, TURBOFAN, ProfileSpec
from apps.common.registry import RegisteredModel

EXAMPLES_PER_OPERATION = 10
CHECKS = [not_a_server_error, response_schema_conformance]


class WithoutLifespan:
    """The app without its lifespan (which opens a real DaprClient): startup and shutdown answered here."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return


def fuzz(
    app: Any, headers: dict[str, str] | None = None, skip: Callable[[str], bool] = lambda p: False
) -> int:
    """Run every operation's generated cases; returns how many operations were fuzzed."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", WithoutLifespan(app))
    operations = [r.ok() for r in schema.get_all_operations()]
    operations = [op for op in operations if not skip(op.path)]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case: schemathesis.Case) -> None:
                case.call_and_validate(headers=headers, checks=CHECKS)

            try:
                run()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, operation.label  # nothing in it can be made invalid
    return len(operations)


# ---------------------------------------------------------------------- the apps, over their fakes
@pytest.fixture
def ingestion() -> Iterator[Any]:
    from apps.ingestion import app as module
    from apps.ingestion.events import EventService
    from tests.unit.ingestion.test_events import FakeArchive, FakeMachines
    from tests.unit.ingestion.test_ingestion_service import RecordingEquipment, RecordingPublisher, service

    module.app.state.service = service(RecordingEquipment(), RecordingPublisher())
    module.app.state.events = EventService(FakeMachines({"fd001-001": 10}), FakeArchive())
    yield module.app
    del module.app.state.service, module.app.state.events


@pytest.fixture
def alerting() -> Iterator[Any]:
    from apps.alerting.app import app, get_sender, get_service
    from apps.alerting.sender import NotificationSender, SenderSettings
    from apps.alerting.service import AlertingService
    from tests.unit.alerting.fakes import FakeMachines, FlakyChannel, InMemoryAlertingRepository

    repo = InMemoryAlertingRepository()
    service = AlertingService(repo, FakeMachines())
    sender = NotificationSender(repo, FlakyChannel(failures=0), SenderSettings())
    app.dependency_overrides[get_service] = lambda: service
    app.dependency_overrides[get_sender] = lambda: sender
    yield app
    app.dependency_overrides.clear()


@pytest.fixture
def inference() -> Iterator[Any]:
    from apps.inference import app as module
    from apps.inference.service import InferenceService
    from apps.inference.settings import InferenceSettings
    from tests.unit.inference.test_inference_service import FEATURES, MODEL, InMemoryRegistry, card, fit

    registry = InMemoryRegistry()
    _, onnx = fit(0)
    asyncio.run(registry.register(card(1, onnx), onnx))
    asyncio.run(registry.promote(MODEL, 1))
    service = InferenceService(registry, InferenceSettings(model_names=[MODEL]))
    asyncio.run(service.refresh_all())
    module.app.state.service = service
    assert FEATURES
    yield module.app
    del module.app.state.service


class FakeTraining:
    """What training's routes ask of TrainingService: jobs by id, the registry's models, a job run (never
    a real one), and what the retrain schedule reads (an empty archive)."""

    busy = False

    def __init__(self) -> None:
        self.jobs: dict[str, Any] = {}

    async def run(self, job: Any) -> Any:
        self.jobs[job.id] = job
        return job

    async def models(self, names: list[str]) -> list[RegisteredModel]:
        return [RegisteredModel(name=n, champion=1, versions=[_card(1)]) for n in names]

    async def read_lives(self) -> list[Any]:
        return []

    async def new_runs(self, profile: Any, runs: Any, since_latest: bool = False) -> list[str]:
        return []


def _card(version: int) -> ModelCard:
    digest = hashlib.sha256(str(version).encode()).hexdigest()
    return ModelCard(
        name=TURBOFAN.model_name,
        version=version,
        created_at=datetime(2024, 1, version, tzinfo=UTC),
        profile="turbofan",
        feature_names=["f"],
        metrics={"rmse": 12.5},
        training_data_fingerprint=digest,
        rul_cap=125.0,
        n_train_rows=10,
        n_train_units=2,
        onnx_sha256=digest,
    )


@pytest.fixture
def training() -> Iterator[Any]:
    from apps.common.profiles import PROFILES
    from apps.training import app as module
    from apps.training.champions import ModelCatalog
    from apps.training.jobstore import JobBook
    from apps.training.schedule import RetrainSchedule, SchedulePolicy
    from tests.unit.training.registry_fakes import MemoryRegistry, Published

    registry = MemoryRegistry()
    registry.models[1] = type("Version", (), {"card": _card(1), "onnx": b""})()  # type: ignore[assignment]
    registry.champion = 1
    service = FakeTraining()
    catalog = ModelCatalog(registry, Published(), {p.model_name: p for p in PROFILES.values()})  # type: ignore[arg-type]
    module.app.state.service, module.app.state.catalog, module.app.state.tasks = service, catalog, set()
    module.app.state.book = JobBook(service.jobs, None, keep=200, save_seconds=1.0)  # memory only
    policy = SchedulePolicy(5, 50, None)
    module.app.state.schedule = RetrainSchedule(service, catalog, [TURBOFAN], policy, lambda job: None)  # type: ignore[arg-type]
    yield module.app
    del module.app.state.service, module.app.state.tasks, module.app.state.catalog, module.app.state.schedule
    del module.app.state.book


class FakeArchiver:
    async def backlog(self) -> Any:
        from types import SimpleNamespace

        return SimpleNamespace(messages=0, readings=0, oldest_seconds=None)

    async def flush(self, force: bool) -> int:
        return 0

    async def stage(self, message_id: str, readings: list[Any]) -> None:
        pass


@pytest.fixture
def archiver() -> Iterator[Any]:
    from apps.archiver import app as module

    module.app.state.service = FakeArchiver()
    yield module.app
    del module.app.state.service


# ---------------------------------------------------------------------- the tests
def test_ingestion_answers_no_5xx_and_keeps_to_its_schema(ingestion: Any) -> None:
    assert fuzz(ingestion) >= 4


def test_alerting_answers_no_5xx_and_keeps_to_its_schema(alerting: Any) -> None:
    assert fuzz(alerting) >= 6


def test_inference_answers_no_5xx_and_keeps_to_its_schema(inference: Any) -> None:
    assert fuzz(inference) >= 3


def test_training_answers_no_5xx_and_keeps_to_its_schema(training: Any) -> None:
    assert fuzz(training) >= 10


def test_archiver_answers_no_5xx_and_keeps_to_its_schema(archiver: Any) -> None:
    assert fuzz(archiver) >= 2


def test_equipment_answers_no_5xx_outside_the_sidecar_routes() -> None:
    from apps.equipment.app import app

    assert fuzz(app, skip=lambda path: path.startswith("/actors")) >= 1


def test_the_gateway_answers_no_5xx_and_keeps_to_its_schema() -> None:
    from apps.gateway.app import app
    from apps.gateway.keys import SCOPES
    from apps.gateway.ports import Answer
    from apps.gateway.ratelimit import Rate
    from tests.unit.alerting.helpers import snapshot
    from tests.unit.gateway.test_gateway_api import make_env

    env = make_env()
    try:
        env.gateway.settings.rates = dict.fromkeys(SCOPES, Rate(per_second=10_000, burst=10_000))
        env.upstream.healths["fd001-001"] = snapshot("fd001-001")
        # What the services answer where the gateway documents their schema.
        event = {"equipment_id": "e", "kind": "failure", "seq": 1, "timestamp": "2024-01-01T00:00:00Z"}
        event |= {"source": "api", "recorded_at": "2024-01-01T00:00:00Z"}
        profiles = [ProfileSpec.of(p).model_dump(mode="json", exclude_none=True) for p in PROFILES.values()]
        for (app_id, path), body in {
            (INGESTION_APP_ID, "v1/readings"): {"accepted": 0, "duplicates": 0},
            (INGESTION_APP_ID, "v1/profiles"): profiles,
            (TRAINING_APP_ID, "v1/models"): [],
            (INFERENCE_APP_ID, "v1/models"): {"turbofan-rul": 1},
        }.items():
            env.upstream.answers[(app_id, path)] = Answer(200, json.dumps(body).encode())
        env.upstream.otherwise = lambda call: Answer(
            200, json.dumps([] if call.verb == "GET" and call.path.endswith("/events") else event).encode()
        )
        assert fuzz(app, headers=env.as_("all")) >= 20
    finally:
        del app.state.gateway
