"""Streaming plan, pacing, progress accounting and the HTTP client's error handling (no server)."""

from __future__ import annotations

import io
import json
import threading
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np
import pytest

from vigil.fleet import Fleet, FleetError, Machine, Reading
from vigil.stream import (
    BatchResult,
    IngestClient,
    PlannedRequest,
    Progress,
    StderrProgress,
    StreamError,
    plan_requests,
    stream,
)

NOW = datetime(2024, 1, 1, tzinfo=UTC)


def machine(eid: str, cycles: int, start: int = 0) -> Machine:
    traj = np.zeros((cycles, 26))
    traj[:, 1] = np.arange(1, cycles + 1)
    traj[:, 2:] = 1.0
    return Machine(eid, 1, traj, start)


def small_fleet() -> Fleet:
    # 3 machines: lengths 4, 2, 3 -> ticks hold 3, 3, 2, 1 readings (9 in all)
    return Fleet((machine("a", 4), machine("b", 2), machine("c", 3)))


def plan(fleet: Fleet, size: int, paced: bool) -> list[PlannedRequest]:
    return list(plan_requests(fleet, size, paced=paced, now=lambda: NOW))


def keys(readings: list[Reading]) -> list[tuple[str, int]]:
    return [(r["equipment_id"], r["seq"]) for r in readings]


def test_unpaced_plan_fills_batches_across_ticks_in_order() -> None:
    fleet = small_fleet()
    requests = plan(fleet, 4, paced=False)
    assert [len(r.readings) for r in requests] == [4, 4, 1]
    sent = [k for r in requests for k in keys(r.readings)]
    assert sent == [("a", 1), ("b", 1), ("c", 1), ("a", 2), ("b", 2), ("c", 2), ("a", 3), ("c", 3), ("a", 4)]
    # cycles complete once each request is sent: tick 0 after the first; ticks 1-2 after the second
    assert [r.cycles_done for r in requests] == [1, 3, 4]


def test_paced_plan_never_spans_ticks_and_batch_is_a_maximum() -> None:
    requests = plan(small_fleet(), 2, paced=True)
    assert [(r.tick, len(r.readings), r.cycles_done) for r in requests] == [
        (0, 2, 0),
        (0, 1, 1),
        (1, 2, 1),
        (1, 1, 2),
        (2, 2, 3),
        (3, 1, 4),
    ]


def test_paced_plan_keeps_empty_ticks_for_pacing() -> None:
    fleet = Fleet((machine("a", 1), machine("b", 1, start=3)))
    requests = plan(fleet, 10, paced=True)
    assert [(r.tick, len(r.readings), r.cycles_done) for r in requests] == [
        (0, 1, 1),
        (1, 0, 2),
        (2, 0, 3),
        (3, 1, 4),
    ]


@pytest.mark.parametrize("size", [0, 5001])
def test_batch_size_limits(size: int) -> None:
    with pytest.raises(FleetError, match="--batch"):
        plan(small_fleet(), size, paced=False)


class FakeSender:
    """Answers like ingestion: accepts new seqs per machine, counts repeats as duplicates,
    rejects machine 'c' at seq 2 with a reason."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}
        self.requests: list[list[Reading]] = []
        self.retried = 0

    def post(self, readings: list[Reading]) -> BatchResult:
        self.requests.append(readings)
        accepted = duplicates = 0
        rejected: list[dict[str, Any]] = []
        for i, r in enumerate(readings):
            if r["equipment_id"] == "c" and r["seq"] == 2:
                rejected.append({"index": i, "equipment_id": "c", "reason": "sensor out of range"})
            elif r["seq"] > self.last.get(r["equipment_id"], 0):
                self.last[r["equipment_id"]] = r["seq"]
                accepted += 1
            else:
                duplicates += 1
        return BatchResult(accepted, duplicates, rejected, {}, 0.0, 0.0)


def test_stream_accounts_for_every_reading() -> None:
    sender = FakeSender()
    seen: list[int] = []
    progress = stream(
        small_fleet(), sender, batch_size=4, on_result=lambda p, r: seen.append(len(p.readings))
    )
    assert (progress.sent, progress.requests, progress.cycles_done) == (9, 3, 4)
    assert (progress.accepted, progress.rejected, progress.duplicates) == (8, 1, 0)
    assert progress.reasons == {"sensor out of range": 1}
    assert seen == [4, 4, 1] and not progress.interrupted
    summary = progress.summary()
    assert "3 machine(s), 4/4 cycles, 9 readings in 3 request(s)" in summary
    assert "accepted 8, duplicates 0, rejected 1" in summary and "1 x sensor out of range" in summary
    again = stream(small_fleet(), sender, batch_size=4)  # a re-run: the actors have it all already
    assert again.duplicates == 8 and again.accepted == 0
    assert "already had these cycles" in again.summary()


def test_paced_stream_sleeps_until_each_tick_is_due() -> None:
    now = [100.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(round(seconds, 6))
        now[0] += seconds

    progress = stream(
        small_fleet(), FakeSender(), batch_size=10, speed=4.0, clock=lambda: now[0], sleep=sleep
    )
    assert sleeps == [0.25, 0.25, 0.25]  # ticks 1..3 at 0.25 s intervals; tick 0 at once
    assert progress.requests == 4 and progress.elapsed() == pytest.approx(0.75)
    assert progress.rate() == pytest.approx(9 / 0.75)


def test_stream_stops_when_asked() -> None:
    stop = threading.Event()
    sender = FakeSender()

    def on_result(planned: PlannedRequest, result: BatchResult) -> None:
        stop.set()

    progress = stream(small_fleet(), sender, batch_size=2, stop=stop, on_result=on_result)
    assert progress.interrupted and progress.requests == 1 and progress.sent == 2
    assert progress.summary().startswith("interrupted:")


def test_negative_speed_is_refused() -> None:
    with pytest.raises(FleetError, match="--speed"):
        stream(small_fleet(), FakeSender(), batch_size=1, speed=-1)


def test_progress_line_and_reporter_output() -> None:
    progress = Progress(machines=2, total_cycles=10, total_readings=20, started=0.0)
    progress.cycles_done, progress.sent, progress.rejected = 5, 10, 1
    assert progress.line(now=2.0, width=10) == (
        "[#####.....] 5/10 cycles | 10/20 readings | 5 readings/s | rejected 1"
    )
    out = io.StringIO()  # not a terminal: plain lines, no carriage returns
    reporter = StderrProgress(out, interval=0.0)
    progress.requests = 1
    reporter.update(progress)
    reporter.finish(progress)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in out.getvalue() and lines[0].startswith("[")


# -------------------------------------------------------------------------------- the HTTP client
def client_with(handler: Any, **kwargs: Any) -> IngestClient:
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return IngestClient("http://ingestion.test", client=http, sleep=lambda s: None, **kwargs)


def test_client_posts_a_batch_and_reads_the_answer() -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/readings"
        bodies.append(request.read())
        return httpx.Response(200, json={"accepted": 1, "duplicates": 0, "rejected": [], "health": {"a": {}}})

    result = client_with(handler).post([{"equipment_id": "a"}])
    assert result.accepted == 1 and result.health == {"a": {}} and result.received_at >= result.sent_at
    assert b'"readings"' in bodies[0]


def test_all_rejected_422_is_an_answer_not_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"accepted": 0, "duplicates": 0, "rejected": [{"index": 0, "reason": "bad id"}], "health": {}}
        return httpx.Response(422, json=body)

    assert client_with(handler).post([{}]).rejected == [{"index": 0, "reason": "bad id"}]


def test_connection_refused_is_a_clear_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    with pytest.raises(
        StreamError, match=r"cannot connect to ingestion at http://ingestion.test \(connection refused\)"
    ):
        client_with(handler).post([{}])


def test_transient_failures_are_retried_then_reported() -> None:
    answers = iter([503, 502, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        return httpx.Response(status, json={"accepted": 1} if status == 200 else {"detail": "busy"})

    client = client_with(handler, retries=3)
    assert client.post([{}]).accepted == 1 and client.retried == 2

    def always_down(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, json={"detail": "down"})

    with pytest.raises(StreamError, match=r"failed 3 times in a row, last: HTTP 503: down"):
        client_with(always_down, retries=2).post([{}])


def test_refused_request_is_not_retried() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return httpx.Response(413, json={"detail": "body too large"})

    with pytest.raises(StreamError, match=r"refused the request \(HTTP 413\): body too large"):
        client_with(handler).post([{}])
    assert len(calls) == 1


def test_readings_not_applied_yet_are_sent_again_alone_until_they_get_in() -> None:
    sent: list[list[int]] = []
    waits: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seqs = [r["seq"] for r in json.loads(request.read())["readings"]]
        sent.append(seqs)
        retry = {"retryable": True, "reason": "not applied, retry: equipment actor call failed"}
        if len(sent) == 1:  # the equipment app restarts: nothing gets in
            rejected = [{"index": i, **retry} for i in range(len(seqs))]
            return httpx.Response(
                503, json={"accepted": 0, "rejected": rejected}, headers={"Retry-After": "2"}
            )
        if len(sent) == 2:  # half of it is back: seq 1 applied, 3 still not, 2 is bad input
            rejected = [{"index": 1, "reason": "bad value"}, {"index": 2, **retry}]
            return httpx.Response(200, json={"accepted": 1, "rejected": rejected, "health": {"m": {"n": 1}}})
        return httpx.Response(200, json={"accepted": len(seqs), "rejected": [], "health": {"m": {"n": 2}}})

    http = httpx.Client(transport=httpx.MockTransport(handler))
    client = IngestClient("http://ingestion.test", client=http, sleep=waits.append, retries=1)
    result = client.post([{"seq": 1}, {"seq": 2}, {"seq": 3}])
    assert sent == [[1, 2, 3], [1, 2, 3], [3]]
    assert result.accepted == 2 and result.rejected == [{"index": 1, "reason": "bad value"}]
    assert result.health == {"m": {"n": 2}}
    assert waits[0] == 2.0  # Retry-After is honoured
    assert client.retried == 2  # and progress reset the count: retries=1 was enough
