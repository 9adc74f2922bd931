"""The fleet's own history, end to end: FD002 engines (six flight conditions) replayed through the live
platform without a rejection, every accepted reading in the archive although the archiver was killed
with SIGKILL mid-replay, failure labels posted without a seq (the machine's last reading), and the
training set built back from archive + labels equal to the one built from the FD002 file."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pytest
from dapr.aio.clients import DaprClient

from apps.common import cmapss
from apps.common.archivestore import ArchiveRead, DaprArchive
from apps.common.profiles import TURBOFAN
from apps.training.history import fleet_lives
from apps.training.quality import build_padded_set, fit_spec
from apps.training.runs import labelled_runs
from localdapr.testing import wait_until
from tests.e2e.platform import Platform, running_platform, write_components

pytestmark = pytest.mark.e2e

UNITS = (1, 2, 3)
PREFIX = "fd002-e2e-"


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("e2e-archive")
    components = write_components(tmp / "components", "embedded")
    env = {
        "VIGIL_TRAINING_N_ESTIMATORS": "30",
        "VIGIL_EQUIPMENT_HEALTH_PUBLISH_SECONDS": "0",
        "VIGIL_ARCHIVER_MAX_DELAY_SECONDS": "3600",  # the test flushes when it wants the archive complete
    }
    with running_platform(components, tmp, env) as p:
        yield p


def batches(data: dict[int, np.ndarray], cycles: int = 20) -> Iterator[list[dict[str, Any]]]:
    longest = max(data[u].shape[0] for u in UNITS)
    for start in range(1, longest + 1, cycles):
        batch = []
        for cycle in range(start, min(start + cycles, longest + 1)):
            for u in UNITS:
                if cycle <= data[u].shape[0]:
                    row = data[u][cycle - 1]
                    batch.append(
                        {
                            "equipment_id": f"{PREFIX}{u:03d}",
                            "timestamp": datetime.now(UTC).isoformat(),
                            "seq": int(row[1]),
                            "values": cmapss.row_values(row),
                        }
                    )
        yield batch


def read_archive(platform: Platform) -> ArchiveRead:
    async def go() -> ArchiveRead:
        async with DaprClient(address=platform.apps["training"].sidecar.grpc_address) as client:
            return await DaprArchive(client).read(f"{PREFIX}{u:03d}" for u in UNITS)

    return asyncio.run(go())


def test_fd002_history_survives_an_archiver_crash_and_becomes_a_training_set(
    platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = cmapss.load_train("FD002")
    ingestion = platform.url("ingestion")
    archiver = platform.apps["archiver"]
    all_batches = list(batches(data))
    accepted = 0
    for i, batch in enumerate(all_batches):
        if i == len(all_batches) // 3:
            # SIGKILL: what it staged stays in the state store, what comes later waits in the broker
            archiver.process.kill()
        if i == 2 * len(all_batches) // 3:
            archiver.start_app()  # the same command on the same port, as a supervisor would
        answer = httpx.post(f"{ingestion}/v1/readings", json={"readings": batch}, timeout=60)
        assert answer.status_code == 200, answer.text
        result = answer.json()
        assert result["rejected"] == [], result["rejected"][:3]  # six flight conditions, all plausible
        accepted += result["accepted"]
    assert accepted == sum(data[u].shape[0] for u in UNITS)

    for u in UNITS:  # the engines failed after their last reading: labels without a seq
        answer = httpx.post(
            f"{ingestion}/v1/equipment/{PREFIX}{u:03d}/events", json={"kind": "failure"}, timeout=30
        )
        assert answer.status_code == 201, answer.text
        assert answer.json()["seq"] == int(data[u][-1, 1])

    flush = f"{archiver.url}/v1/archive/flush"
    monkeypatch.setenv("DAPR_HTTP_PORT", str(platform.apps["training"].sidecar.http_port))

    def archived() -> ArchiveRead | None:
        """The archive once it holds every accepted reading: an empty backlog alone is not enough,
        since what the broker still redelivers to the restarted archiver is not staged yet."""
        if httpx.post(flush, timeout=60).json()["archived"] != 0:
            return None
        if httpx.get(f"{archiver.url}/v1/archive/backlog", timeout=10).json()["messages"] != 0:
            return None
        read = read_archive(platform)
        held = sum(len(h.seq) for h in read.histories.values())
        return read if held >= accepted else None

    found = wait_until(archived, timeout=120, interval=1.0, what="every accepted reading staged and written")
    assert found.skipped == []
    for u in UNITS:
        block = found.histories[f"{PREFIX}{u:03d}"]
        np.testing.assert_array_equal(block.seq, data[u][:, 1])  # nothing lost, nothing twice
        np.testing.assert_array_equal(block.values["sensor_7"], cmapss.column(data[u], "sensor_7"))
    runs = labelled_runs(fleet_lives(found.histories, found.events), TURBOFAN)
    got = {int(runs.keys[i].split("#")[0][-3:]): t for i, t in {**runs.fit, **runs.held_out}.items()}
    assert sorted(got) == sorted(UNITS)
    units = {u: data[u] for u in UNITS}
    expected = build_padded_set(units, TURBOFAN, fit_spec(units, TURBOFAN), 125.0)
    training_set = build_padded_set(got, TURBOFAN, fit_spec(got, TURBOFAN), 125.0)
    np.testing.assert_array_equal(training_set.X, expected.X)  # the shared pipeline's rows
    np.testing.assert_array_equal(training_set.y, expected.y)
