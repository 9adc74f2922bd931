"""`vigil replay` and `vigil simulate` over real HTTP into a tiny FastAPI stand-in for ingestion."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from apps.common.cmapss import load_train
from apps.common.contracts import ReadingBatch
from localdapr.ports import free_port
from localdapr.testing import port_open, wait_until
from vigil.cli import main


class Stub:
    """Answers like ingestion (accepted / duplicates by seq per machine) and keeps what it got."""

    def __init__(self) -> None:
        self.batches: list[ReadingBatch] = []
        self.last: dict[str, int] = {}
        self.app = FastAPI()
        self.app.post("/v1/readings")(self.readings)

    async def readings(self, batch: ReadingBatch) -> dict[str, Any]:  # validated by the real contract
        self.batches.append(batch)
        accepted = duplicates = 0
        for r in batch.readings:
            if r.seq > self.last.get(r.equipment_id, 0):
                self.last[r.equipment_id] = r.seq
                accepted += 1
            else:
                duplicates += 1
        return {"accepted": accepted, "duplicates": duplicates, "rejected": [], "health": {}}


@pytest.fixture
def stub() -> Iterator[tuple[Stub, str]]:
    stub = Stub()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(stub.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: port_open(port), timeout=15, what="stub ingestion listening")
    yield stub, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_replay_sends_every_cycle_of_every_unit_in_order(
    stub: tuple[Stub, str], capsys: pytest.CaptureFixture[str]
) -> None:
    app, url = stub
    assert main(["replay", "--units", "1-3", "--url", url, "--speed", "0", "--batch", "64"]) == 0
    data = load_train()
    readings = [r for b in app.batches for r in b.readings]
    assert all(len(b.readings) <= 64 for b in app.batches)
    assert len(readings) == sum(len(data[u]) for u in (1, 2, 3))
    for u in (1, 2, 3):
        seqs = [r.seq for r in readings if r.equipment_id == f"fd001-{u:03d}"]
        assert seqs == list(range(1, len(data[u]) + 1))
    # all units advance together: a machine's cycle k never comes after another's cycle k + 1
    assert [r.seq for r in readings] == sorted(r.seq for r in readings)
    out = capsys.readouterr()
    assert f"accepted {len(readings):,}, duplicates 0, rejected 0" in out.out
    assert "cycles" in out.err  # the progress bar

    # a second run of the same units: every reading is a duplicate, and the summary says so
    assert main(["replay", "--units", "1-3", "--url", url, "--speed", "0", "--batch", "500"]) == 0
    assert "already had these cycles" in capsys.readouterr().out


def test_simulate_streams_a_larger_fleet(stub: tuple[Stub, str], capsys: pytest.CaptureFixture[str]) -> None:
    app, url = stub
    assert main(["simulate", "--machines", "25", "--seed", "4", "--url", url, "--batch", "1000"]) == 0
    machines = {r.equipment_id for b in app.batches for r in b.readings}
    assert machines == {f"sim-{i:05d}" for i in range(25)}
    assert "25 machine(s)" in capsys.readouterr().out
