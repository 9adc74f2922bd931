"""The archive through real localdapr sidecars: the archiver app as a real process (SQLite staging,
in-memory pub/sub, bindings.localstorage), killed with SIGKILL and restarted with nothing lost; labels
through ingestion; `vigil import` then read back. Every wait is on a condition with a deadline."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from dapr.aio.clients import DaprClient
from dapr.clients import DaprClient as SyncDaprClient

from apps.archiver.service import shard_of
from apps.common import cmapss
from apps.common.archivestore import ArchiveRead, DaprArchive
from apps.common.names import (
    ARCHIVE_BINDING,
    ARCHIVER_APP_ID,
    EQUIPMENT_APP_ID,
    INGESTION_APP_ID,
    PUBSUB,
    STATE_STORE,
    TOPIC_READINGS_ACCEPTED,
    TRAINING_APP_ID,
)
from apps.common.profiles import TURBOFAN
from apps.training.history import fleet_lives
from apps.training.quality import build_padded_set, fit_spec
from apps.training.runs import labelled_runs
from localdapr.sidecar import SidecarOptions
from localdapr.testing import AppProcess, SidecarThread, free_port, wait_until
from tests.integration.localdapr.components import component, write

pytestmark = pytest.mark.sidecar

REPO = Path(__file__).resolve().parents[3]
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def write_resources(folder: Path, archive_root: Path) -> Path:
    write(folder, "pubsub.yaml", component(PUBSUB, "pubsub.in-memory", {}))
    write(
        folder,
        "statestore.yaml",
        component(
            STATE_STORE, "state.sqlite", {"connectionString": str(folder / "s.db"), "actorStateStore": "true"}
        ),
    )
    write(
        folder,
        "archive.yaml",
        component(ARCHIVE_BINDING, "bindings.localstorage", {"rootPath": str(archive_root)}),
    )
    return folder


def read_archive(sidecar: SidecarThread) -> ArchiveRead:
    async def go() -> ArchiveRead:
        async with DaprClient(address=sidecar.grpc_address) as client:
            return await DaprArchive(client).read()

    return asyncio.run(go())


@dataclass
class Archiver:
    sidecar: SidecarThread
    port: int
    publisher: SidecarThread  # in ingestion's role: publishes readings-accepted
    app: AppProcess | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def backlog(self) -> dict[str, Any]:
        return httpx.get(f"{self.url}/v1/archive/backlog", timeout=10).json()  # type: ignore[no-any-return]

    def flush(self) -> int:
        return int(httpx.post(f"{self.url}/v1/archive/flush", timeout=60).json()["archived"])

    def start_app(self, max_delay: float = 3600) -> None:
        """A long delay by default: only an explicit flush writes, so a test knows what is staged."""
        env = {"VIGIL_ARCHIVER_MAX_DELAY_SECONDS": str(max_delay), "VIGIL_ARCHIVER_CHECK_SECONDS": "0.2"}
        app_env = self.sidecar.options.app_env()
        self.app = AppProcess(
            "apps.archiver.app:app", self.port, app_env, env, cwd=REPO, name="archiver"
        ).start()

    def stop_app(self) -> None:
        if self.app is not None:
            self.app.stop()

    def publish(self, readings: list[dict[str, Any]], event_id: str) -> None:
        with SyncDaprClient(address=self.publisher.grpc_address) as client:
            client.publish_event(
                PUBSUB,
                TOPIC_READINGS_ACCEPTED,
                json.dumps({"readings": readings}),
                data_content_type="application/json",
                publish_metadata={"cloudevent.id": event_id},
            )


def reading(eq: str, seq: int) -> dict[str, Any]:
    values = {s: float(lo + (hi - lo) * ((seq % 50) / 50)) for s, (lo, hi) in TURBOFAN.channels.items()}
    return {
        "equipment_id": eq,
        "profile": "turbofan",
        "timestamp": (T0 + timedelta(minutes=seq)).isoformat(),
        "seq": seq,
        "values": values,
    }


@pytest.fixture
def archiver(tmp_path: Path) -> Iterator[Archiver]:
    resources = write_resources(tmp_path / "res", tmp_path / "archive")
    registry = tmp_path / "reg"
    port = free_port()
    options = SidecarOptions(
        app_id=ARCHIVER_APP_ID, resources_paths=[resources], app_port=port, registry_dir=registry
    )
    sidecar = SidecarThread(options).start()
    running: Archiver | None = None
    try:
        publisher = SidecarThread(
            SidecarOptions(app_id=INGESTION_APP_ID, resources_paths=[resources], registry_dir=registry)
        ).start()
        running = Archiver(sidecar, port, publisher)
        running.start_app()
        sidecar.wait_app_ready()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DAPR_HTTP_PORT", str(publisher.http_port))  # the async SDK's health check
            yield running
    finally:
        if running is not None:
            running.stop_app()
            running.publisher.stop()
        sidecar.stop()


def test_a_killed_archiver_loses_nothing_staged_or_in_flight(archiver: Archiver) -> None:
    machines = ("m1", "m2", "m3")
    sent: set[tuple[str, int]] = set()

    def send(first: int, last: int) -> None:
        for seq in range(first, last):
            batch = [reading(m, seq) for m in machines]
            archiver.publish(batch, f"msg-{seq}")
            sent.update((m, seq) for m in machines)

    send(0, 20)
    wait_until(lambda: archiver.backlog()["messages"] == 20, timeout=30, what="20 messages staged")
    assert archiver.flush() == 60
    send(20, 40)  # staged, not yet flushed, when the archiver dies
    wait_until(lambda: archiver.backlog()["messages"] == 20, timeout=30, what="20 more staged")
    assert archiver.app is not None
    archiver.app.kill()
    send(40, 60)  # published while it is down: the broker keeps them and redelivers
    archiver.publish([reading("m1", 5)], "resent-5")  # a reading archived twice
    archiver.start_app()
    # 20 staged before the kill + 21 redelivered (one more if a message was staged but its ack cut)
    wait_until(lambda: archiver.backlog()["messages"] >= 41, timeout=60, what="staged + redelivered")
    assert archiver.flush() >= 121
    assert archiver.backlog() == {"messages": 0, "readings": 0, "oldest_seconds": None}

    found = read_archive(archiver.publisher)
    assert found.skipped == []
    got = {(eid, int(s)) for eid, block in found.histories.items() for s in block.seq}
    assert got == sent  # every reading, once
    m2 = found.histories["m2"]
    assert m2.seq.tolist() == list(range(60))
    expected = reading("m2", 33)["values"]["sensor_7"]
    assert m2.values["sensor_7"][33] == expected
    assert m2.timestamp[33] == np.datetime64("2024-01-01T00:33:00", "us")


def test_full_messages_staged_in_one_shard_flush(archiver: Archiver) -> None:
    """Ingestion hands off up to 1,000 readings per message (~700 KB): ten of them staged in one shard
    are read back and written in one flush (read a hundred at a time they overflowed the sidecar's 4 MB
    gRPC message limit and every flush failed)."""
    ids = [i for i in (f"big-{n}" for n in range(200)) if shard_of(i) == 0][:10]
    for k, event_id in enumerate(ids):
        archiver.publish([reading(f"big{m}", 100 * k + s) for m in range(10) for s in range(100)], event_id)
    wait_until(lambda: archiver.backlog()["messages"] == 10, timeout=60, what="10 full messages staged")
    assert archiver.flush() == 10_000
    assert archiver.backlog()["messages"] == 0


def test_the_flusher_writes_on_its_own_when_the_delay_passes(archiver: Archiver) -> None:
    archiver.stop_app()
    archiver.start_app(max_delay=1)
    archiver.publish([reading("m9", s) for s in range(5)], "timed")
    wait_until(
        lambda: "m9" in read_archive(archiver.publisher).histories,
        timeout=30,
        interval=0.5,
        what="m9 archived",
    )
    assert archiver.backlog()["messages"] == 0


def test_labels_round_trip_through_ingestion_and_the_archive(tmp_path: Path) -> None:
    """An event is archived, then its machine's actor starts a new life (ingestion answers 201 only
    once both are done), so the equipment app runs here too."""
    resources = write_resources(tmp_path / "res", tmp_path / "archive")
    registry = tmp_path / "reg"
    port, equipment_port = free_port(), free_port()
    sidecar = SidecarThread(
        SidecarOptions(
            app_id=INGESTION_APP_ID, resources_paths=[resources], app_port=port, registry_dir=registry
        )
    ).start()
    equipment_sidecar = SidecarThread(
        SidecarOptions(
            app_id=EQUIPMENT_APP_ID,
            resources_paths=[resources],
            app_port=equipment_port,
            registry_dir=registry,
        )
    ).start()
    reader = None
    app = None
    equipment = None
    try:
        equipment = AppProcess(
            "apps.equipment.app:app",
            equipment_port,
            equipment_sidecar.options.app_env(),
            {},
            cwd=REPO,
            name="equipment",
        ).start()
        equipment_sidecar.wait_app_ready()
        app = AppProcess(
            "apps.ingestion.app:app", port, sidecar.options.app_env(), {}, cwd=REPO, name="ingestion"
        ).start()
        sidecar.wait_app_ready()
        url = f"http://127.0.0.1:{port}/v1/equipment/eng-7/events"
        failure = {"kind": "failure", "seq": 192, "timestamp": "2024-02-01T10:00:00Z", "note": "blade loss"}
        assert httpx.post(url, json=failure, timeout=10).status_code == 201
        assert httpx.post(url, json=failure, timeout=10).status_code == 201  # recorded twice: one file
        assert httpx.post(url, json={"kind": "replaced", "seq": 192}, timeout=10).status_code == 201
        bad = httpx.post(url, json={"kind": "failure", "seq": 5, "extra": 1}, timeout=10)
        assert bad.status_code == 422 and "unexpected field 'extra'" in bad.json()["detail"]
        listed = httpx.get(url, timeout=10).json()
        assert [(e["kind"], e["seq"], e["note"]) for e in listed] == [
            ("failure", 192, "blade loss"),
            ("replaced", 192, ""),
        ]
        assert list((tmp_path / "archive" / "events" / "eng-7").iterdir()) != []
        # training's view, through its own sidecar: the same events
        reader = SidecarThread(
            SidecarOptions(app_id=TRAINING_APP_ID, resources_paths=[resources], registry_dir=registry)
        ).start()
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DAPR_HTTP_PORT", str(reader.http_port))
            found = read_archive(reader)
        assert [(e.equipment_id, e.kind, e.seq, e.source) for e in found.events] == [
            ("eng-7", "failure", 192, "api"),
            ("eng-7", "replaced", 192, "api"),
        ]
    finally:
        for process in (app, equipment):
            if process is not None:
                process.stop()
        if reader is not None:
            reader.stop()
        sidecar.stop()
        equipment_sidecar.stop()


def test_vigil_import_then_read_back_is_the_fd001_history(tmp_path: Path) -> None:
    shutil.copytree(REPO / "components" / "embedded", tmp_path / "components")
    shutil.copy(REPO / "components" / "secrets.json", tmp_path / "components")  # the secret store's file
    train = REPO / "data" / "cmapss" / "train_FD001.txt.gz"
    cmd = [sys.executable, "-m", "vigil.cli", "import", "cmapss", str(train), "--resources", "components"]
    # cwd = tmp_path: the profile's relative .localdapr/archive lands there, not in the repo
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "imported 100 machine(s), 20,631 readings" in done.stdout and "100 failure(s)" in done.stdout
    assert "written" in done.stderr  # the progress bar
    root = tmp_path / ".localdapr" / "archive"
    files = sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file()) == files  # same files

    reader_res = write_resources(tmp_path / "res", root)
    reader = SidecarThread(
        SidecarOptions(app_id=TRAINING_APP_ID, resources_paths=[reader_res], registry_dir=tmp_path / "reg")
    ).start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("DAPR_HTTP_PORT", str(reader.http_port))
            found = read_archive(reader)
    finally:
        reader.stop()
    units = cmapss.load_train()
    assert sorted(found.histories) == [f"fd001-{u:03d}" for u in units] and found.skipped == []
    for unit in (1, 50, 100):
        block = found.histories[f"fd001-{unit:03d}"]
        np.testing.assert_array_equal(block.seq, units[unit][:, 1])
        for name in TURBOFAN.channels:
            np.testing.assert_array_equal(block.values[name], cmapss.column(units[unit], name))
    assert {(e.kind, e.seq) for e in found.events if e.equipment_id == "fd001-001"} == {
        ("failure", int(units[1][-1, 1]))
    }
    runs = labelled_runs(fleet_lives(found.histories, found.events), TURBOFAN)
    got = {int(runs.keys[i][6:9]): t for i, t in {**runs.fit, **runs.held_out}.items()}  # fd001-007#0 -> 7
    assert sorted(got) == sorted(units)
    spec = fit_spec(units, TURBOFAN)
    expected = build_padded_set(units, TURBOFAN, spec, 125.0)
    training_set = build_padded_set(got, TURBOFAN, fit_spec(got, TURBOFAN), 125.0)
    np.testing.assert_array_equal(training_set.X, expected.X)  # the shared pipeline's rows
    np.testing.assert_array_equal(training_set.y, expected.y)


def test_vigil_import_refuses_a_bad_file_before_writing(tmp_path: Path) -> None:
    bad = tmp_path / "train_FD001.txt"
    bad.write_text("1 1 0.1\n")
    cmd = [sys.executable, "-m", "vigil.cli", "import", "cmapss", str(bad)]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {bad} line 1: expected 26 numbers, got 3"
    assert not (tmp_path / ".localdapr").exists()
