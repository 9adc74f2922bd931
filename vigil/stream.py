"""Streaming a fleet's readings into ingestion's `POST /v1/readings`, paced, with progress.

Shared by `vigil replay`, `vigil simulate` and `vigil demo`. The plan (which
readings go in which request, and how many cycles are complete once it is sent) is pure and separate
from the HTTP client, so it is unit-tested without a server.

Pacing: with `speed` > 0, tick t is sent at start + t / speed and a request never spans two ticks
(`batch` is then a maximum: a reading is not held back waiting for the next cycle). With speed 0
requests are filled to `batch` across ticks, as fast as ingestion answers. Requests are sent one at
a time, in order, because the actor drops any seq at or below the last one it applied: two requests
in flight for the same machine could overtake each other and lose readings as "duplicates".
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol, TextIO

import httpx

from apps.common.contracts import MAX_BATCH_READINGS
from vigil.command import vigil_command
from vigil.fleet import Fleet, FleetError, Reading

READINGS_PATH: Final = "/v1/readings"
RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})


class StreamError(RuntimeError):
    """Streaming cannot go on (ingestion unreachable, or it refuses the requests themselves)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------------------------------------- plan
@dataclass(frozen=True, slots=True)
class PlannedRequest:
    tick: int  # the latest tick whose readings are in this request (its pacing deadline applies)
    readings: list[Reading]
    cycles_done: int  # ticks whose readings have all been sent once this request is


def plan_requests(
    fleet: Fleet, batch_size: int, *, paced: bool, now: Callable[[], datetime] = utc_now
) -> Iterator[PlannedRequest]:
    """Requests in send order. Lazy: a tick's readings are stamped when the generator reaches it.

    A chunk cut mid-tick leaves only that tick's readings behind (whatever was left from earlier
    ticks is fewer than `batch_size` and goes first), so `cycles_done` is the tick's index then.
    Paced, an empty tick still yields an (empty) request so pacing and progress move on.
    """
    if not 1 <= batch_size <= MAX_BATCH_READINGS:
        raise FleetError(f"--batch must be between 1 and {MAX_BATCH_READINGS} (ingestion's batch limit)")
    pending: list[Reading] = []
    for t in range(fleet.n_ticks):
        fresh = fleet.tick(t, now())
        pending.extend(fresh)
        while len(pending) >= batch_size:
            chunk, pending = pending[:batch_size], pending[batch_size:]
            yield PlannedRequest(t, chunk, t if pending else t + 1)
        if paced and (pending or not fresh):
            yield PlannedRequest(t, pending, t + 1)
            pending = []
    if pending:
        yield PlannedRequest(fleet.n_ticks - 1, pending, fleet.n_ticks)


# -------------------------------------------------------------------------------------- accounting
@dataclass(frozen=True, slots=True)
class BatchResult:
    """Ingestion's answer to one request (IngestResult), with client-side send/receive times."""

    accepted: int
    duplicates: int
    rejected: list[dict[str, Any]]
    health: dict[str, dict[str, Any]]
    sent_at: float  # time.time() just before sending
    received_at: float  # time.time() when the answer was read

    @classmethod
    def from_json(cls, body: dict[str, Any], sent_at: float, received_at: float) -> BatchResult:
        return cls(
            accepted=int(body.get("accepted", 0)),
            duplicates=int(body.get("duplicates", 0)),
            rejected=list(body.get("rejected") or []),
            health=dict(body.get("health") or {}),
            sent_at=sent_at,
            received_at=received_at,
        )


@dataclass
class Progress:
    """Counts of one streaming run; what the progress bar and the final summary show."""

    machines: int
    total_cycles: int
    total_readings: int
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    cycles_done: int = 0
    sent: int = 0
    requests: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    retries: int = 0
    interrupted: bool = False
    reasons: Counter[str] = field(default_factory=Counter)

    @classmethod
    def for_fleet(cls, fleet: Fleet, clock: Callable[[], float] = time.monotonic) -> Progress:
        return cls(len(fleet.machines), fleet.n_ticks, fleet.total_readings, started=clock())

    def record(self, planned: PlannedRequest, result: BatchResult | None) -> None:
        """Account for one planned request (`result` None: it was empty, nothing was sent)."""
        self.cycles_done = planned.cycles_done
        if result is None:
            return
        self.requests += 1
        self.sent += len(planned.readings)
        self.accepted += result.accepted
        self.duplicates += result.duplicates
        self.rejected += len(result.rejected)
        for rejection in result.rejected:
            self.reasons[str(rejection.get("reason", "?"))] += 1

    def elapsed(self, now: float | None = None) -> float:
        end = self.finished if self.finished is not None else (time.monotonic() if now is None else now)
        return max(end - self.started, 0.0)

    def rate(self, now: float | None = None) -> float:
        elapsed = self.elapsed(now)
        return self.sent / elapsed if elapsed > 0 else 0.0

    def line(self, now: float | None = None, width: int = 24) -> str:
        fraction = self.cycles_done / self.total_cycles if self.total_cycles else 1.0
        done = int(width * fraction)
        extra = f" | duplicates {self.duplicates:,}" if self.duplicates else ""
        return (
            f"[{'#' * done}{'.' * (width - done)}] {self.cycles_done}/{self.total_cycles} cycles | "
            f"{self.sent:,}/{self.total_readings:,} readings | {self.rate(now):,.0f} readings/s | "
            f"rejected {self.rejected:,}{extra}"
        )

    def summary(self) -> str:
        head = "interrupted" if self.interrupted else "done"
        text = (
            f"{head}: {self.machines} machine(s), {self.cycles_done}/{self.total_cycles} cycles, "
            f"{self.sent:,} readings in {self.requests:,} request(s), {self.elapsed():.1f} s "
            f"({self.rate():,.0f} readings/s): accepted {self.accepted:,}, duplicates {self.duplicates:,}, "
            f"rejected {self.rejected:,}"
        )
        if self.retries:
            text += f", {self.retries} retried request(s)"
        if self.duplicates and not self.accepted:
            text += (
                "\n  every reading was a duplicate: these machines already had these cycles (try --prefix)"
            )
        for reason, count in self.reasons.most_common(3):
            text += f"\n  {count:,} x {reason}"
        return text


class Reporter(Protocol):
    def update(self, progress: Progress) -> None: ...

    def finish(self, progress: Progress) -> None: ...


class StderrProgress:
    """The progress line on stderr: redrawn in place on a terminal, a plain line now and then otherwise
    (so a log file or CI output is not flooded with carriage returns)."""

    def __init__(
        self, stream: TextIO | None = None, interval: float | None = None, redraw: bool | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        # `redraw=False` when other output shares the terminal (the demo's app logs): a line redrawn
        # with \r would be torn apart by them.
        self.tty = self.stream.isatty() if redraw is None else redraw
        self.interval = interval if interval is not None else (0.2 if self.tty else 5.0)
        self._last = float("-inf")

    def update(self, progress: Progress) -> None:
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        self._last = now
        self._write(progress.line(now))

    def finish(self, progress: Progress) -> None:
        if not progress.requests:
            return  # nothing was sent (e.g. ingestion unreachable): an empty bar would only add noise
        self._write(progress.line())
        if self.tty:
            self.stream.write("\n")
        self.stream.flush()

    def _write(self, line: str) -> None:
        self.stream.write(f"\r{line}\033[K" if self.tty else f"{line}\n")
        self.stream.flush()


class SilentProgress:
    def update(self, progress: Progress) -> None:
        return None

    def finish(self, progress: Progress) -> None:
        return None


# ------------------------------------------------------------------------------------------- HTTP
class IngestClient:
    """POSTs batches to ingestion and makes sure every reading gets in or is refused for a reason.

    Retries what a retry can fix: connection drops, 5xx and 429, and the readings ingestion could not
    apply yet (503 with Retry-After, or rejections marked `retryable`: an equipment actor restarting).
    Only those readings are sent again, in their order, before the stream moves on, so a machine
    never gets a later cycle before an earlier one. Resending is safe: the actor drops sequence
    numbers it has already applied. `retries` bounds the attempts in a row that get nothing applied
    (backoff doubling up to `max_backoff` seconds); then a `StreamError` says what went wrong.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 60.0,
        retries: int = 8,
        backoff: float = 0.5,
        max_backoff: float = 5.0,
        client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        headers: dict[str, str] | None = None,
    ) -> None:
        """`headers` go with every request (the app token `vigil up` gave ingestion)."""
        self.base_url = base_url.rstrip("/")
        self.url = self.base_url + READINGS_PATH
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sleep = sleep
        self.retried = 0
        self._connected = False
        self._http = client or httpx.Client(timeout=timeout, headers=headers)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> IngestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def post(self, readings: list[Reading]) -> BatchResult:
        todo = list(range(len(readings)))  # positions in `readings` still to be applied
        accepted = duplicates = 0
        rejected: list[dict[str, Any]] = []
        health: dict[str, dict[str, Any]] = {}
        sent_at = time.time()
        failures = 0
        while True:
            answer, problem, wait = self._attempt([readings[i] for i in todo])
            if answer is not None:
                accepted += int(answer.get("accepted", 0))
                duplicates += int(answer.get("duplicates", 0))
                health.update(answer.get("health") or {})
                again: list[int] = []
                for rejection in answer.get("rejected") or []:
                    original = todo[int(rejection.get("index", 0))]
                    if rejection.get("retryable"):
                        again.append(original)
                    else:
                        rejected.append({**rejection, "index": original})
                if not again:
                    rejected.sort(key=lambda r: r["index"])
                    return BatchResult(accepted, duplicates, rejected, health, sent_at, time.time())
                if len(again) < len(todo):
                    failures = 0  # progress: only what is left counts against the retries
                todo = again
                problem = f"{len(again)} reading(s) not applied yet: {_first_retry_reason(answer)}"
            if failures >= self.retries:
                raise StreamError(
                    f"ingestion at {self.base_url} failed {failures + 1} times in a row, last: {problem}"
                )
            failures += 1
            self.retried += 1
            self.sleep(max(wait, min(self.backoff * 2 ** (failures - 1), self.max_backoff)))

    def _attempt(self, readings: list[Reading]) -> tuple[dict[str, Any] | None, str, float]:
        """(IngestResult body, "", Retry-After) for an answer; (None, problem, 0) for a failure that a
        retry may fix; raises StreamError for one it cannot."""
        try:
            response = self._http.post(self.url, json={"readings": readings})
        except httpx.ConnectError as exc:
            if not self._connected:
                # Nothing listens there at all: retrying would only delay the message.
                raise StreamError(
                    f"cannot connect to ingestion at {self.base_url} ({_reason(exc)}). "
                    f"Is the platform running? Start it with `{vigil_command()} up` (or `make up`), "
                    "or point --url at ingestion."
                ) from None
            return None, f"connection failed ({_reason(exc)})", 0.0
        except httpx.TimeoutException:
            return None, "timed out", 0.0
        except httpx.HTTPError as exc:
            return None, f"HTTP error ({_reason(exc)})", 0.0
        self._connected = True
        body = _json_or_none(response)
        wait = _retry_after(response)
        # 200; 422 = every reading rejected, each with its reason; 503 = none applied yet, all retryable.
        if response.status_code in (200, 422, 503) and isinstance(body, dict) and "accepted" in body:
            return body, "", wait
        detail = body.get("detail") if isinstance(body, dict) else response.text[:300]
        if response.status_code not in RETRY_STATUSES:
            raise StreamError(f"ingestion refused the request (HTTP {response.status_code}): {detail}")
        return None, f"HTTP {response.status_code}: {detail}", wait


def _first_retry_reason(answer: dict[str, Any]) -> str:
    return next((str(r.get("reason")) for r in answer.get("rejected") or [] if r.get("retryable")), "")


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(float(response.headers.get("retry-after", 0)), 0.0)
    except ValueError:  # an HTTP date: not sent by ingestion; fall back to the backoff
        return 0.0


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if "refused" in text.lower() or "errno 111" in text.lower():
        return "connection refused"
    return text or type(exc).__name__


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class Sender(Protocol):
    def post(self, readings: list[Reading]) -> BatchResult: ...


# ------------------------------------------------------------------------------------------ stream
def stream(
    fleet: Fleet,
    sender: Sender,
    *,
    batch_size: int,
    speed: float = 0.0,
    reporter: Reporter | None = None,
    stop: threading.Event | None = None,
    on_result: Callable[[PlannedRequest, BatchResult], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], datetime] = utc_now,
) -> Progress:
    """Send every reading of `fleet`, paced at `speed` ticks (cycles) per second (0: unpaced).

    Returns the accounting; stops early (progress.interrupted) when `stop` is set. Raises
    StreamError when ingestion cannot be reached or refuses the requests.
    """
    if speed < 0:
        raise FleetError("--speed must be >= 0 (0 = as fast as possible)")
    report = reporter or SilentProgress()
    progress = Progress.for_fleet(fleet, clock)
    try:
        for planned in plan_requests(fleet, batch_size, paced=speed > 0, now=now):
            if speed > 0:
                delay = progress.started + planned.tick / speed - clock()
                if delay > 0:
                    if stop is not None:
                        stop.wait(delay)  # wakes at once on Ctrl-C instead of sleeping on
                    else:
                        sleep(delay)
            if stop is not None and stop.is_set():
                progress.interrupted = True
                break
            result = sender.post(planned.readings) if planned.readings else None
            progress.record(planned, result)
            if result is not None and on_result is not None:
                on_result(planned, result)
            report.update(progress)
    except KeyboardInterrupt:  # Ctrl-C: stop sending, still account for and summarise what was sent
        progress.interrupted = True
    finally:
        progress.retries = getattr(sender, "retried", 0)
        progress.finished = clock()
        report.finish(progress)
    return progress
