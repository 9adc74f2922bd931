"""Alert notifications through the `notifications` output binding, end to end: alerting as a real
process behind a real localdapr sidecar, the repo's own notifications.yaml (bindings.http, URL from
the secret store) pointing at a local webhook receiver.

The receiver keeps what a real one would: each Idempotency-Key's first receipt is the delivery in
effect, a repeat is acknowledged and dropped. Exactly one delivery per alert change, in order, whether
the webhook fails the first attempts or alerting is killed between the alert write and the send.

A module of its own: pubsub.in-memory is process-wide (see test_alerting_restart.py).
"""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from apps.common.names import TOPIC_ALERTS
from localdapr.testing import wait_until
from tests.integration.alerting.test_alerting_sidecar import Alerting, start_alerting, write_resources
from tests.integration.localdapr.components import component, write
from tests.unit.alerting.helpers import alert

pytestmark = pytest.mark.sidecar

REPO = Path(__file__).resolve().parents[3]
FAST = {
    "VIGIL_ALERTING_NOTIFY_TIMEOUT_SECONDS": "2",  # a held request is given up after 2 s, claim 7 s
    "VIGIL_ALERTING_NOTIFY_INITIAL_BACKOFF_SECONDS": "0.3",
    "VIGIL_ALERTING_NOTIFY_MAX_BACKOFF_SECONDS": "1",
    "VIGIL_ALERTING_NOTIFY_POLL_SECONDS": "0.5",
}


@dataclass
class Receipt:
    key: str
    body: dict[str, Any]
    status: int
    effective: bool  # the first receipt of its key: the delivery that counts


@dataclass
class Webhook:
    """A webhook receiver: refuses the first `fail_first` attempts of each key (503), refuses every
    attempt while `down`, and holds each first receipt until `release` is set while `hold` is."""

    fail_first: int = 0
    down: bool = False
    hold: bool = False
    release: threading.Event = field(default_factory=threading.Event)
    receipts: list[Receipt] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, key: str, body: dict[str, Any]) -> int:
        with self.lock:
            tries = sum(1 for r in self.receipts if r.key == key)
            seen = any(r.effective for r in self.receipts if r.key == key)
            refused = self.down or tries < self.fail_first
            status = 503 if refused else 200
            self.receipts.append(Receipt(key, body, status, effective=not refused and not seen))
        if self.hold and not refused and not seen:
            self.release.wait(30)  # the sender is killed while it waits for this answer
        return status

    def delivered(self) -> list[Receipt]:
        with self.lock:
            return [r for r in self.receipts if r.effective]

    def attempts(self, key: str) -> list[int]:
        with self.lock:
            return [r.status for r in self.receipts if r.key == key]


@pytest.fixture
def webhook() -> Iterator[tuple[Webhook, str]]:
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status = hook.answer(self.headers.get("Idempotency-Key", ""), body)
            try:
                self.send_response(status)
                self.end_headers()
            except OSError:
                pass  # the sender was killed while its request was held

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook, f"http://127.0.0.1:{server.server_address[1]}/vigil/alerts"
    finally:
        hook.release.set()
        server.shutdown()
        server.server_close()


def resources(folder: Path, url: str) -> Path:
    """The test's store and broker, the shipped notifications binding, and a secret store holding `url`."""
    write_resources(folder)
    shutil.copy(REPO / "components" / "embedded" / "notifications.yaml", folder / "notifications.yaml")
    write(folder, "secrets.json", json.dumps({"notification": {"webhook-url": url}}))
    write(
        folder,
        "secretstore.yaml",
        component(
            "secretstore",
            "secretstores.local.file",
            {"secretsFile": str(folder / "secrets.json"), "nestedSeparator": ":"},
        ),
    )
    return folder


@pytest.fixture
def alerting(
    tmp_path: Path, webhook: tuple[Webhook, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Alerting]:
    running = start_alerting(resources(tmp_path / "res", webhook[1]), tmp_path / "reg", FAST)
    monkeypatch.setenv("DAPR_HTTP_PORT", str(running.publisher.http_port))  # the SDK's health check
    try:
        yield running
    finally:
        running.stop()


def status(running: Alerting) -> dict[str, Any]:
    return running.get("/v1/notifications")  # type: ignore[no-any-return]


def machine() -> str:
    return f"nt-{uuid.uuid4().hex[:8]}"


def test_a_webhook_failing_its_first_attempts_gets_each_change_exactly_once_in_order(
    alerting: Alerting, webhook: tuple[Webhook, str]
) -> None:
    hook, _ = webhook
    hook.fail_first = 3
    eid = machine()
    alerting.publish(TOPIC_ALERTS, alert("open", equipment_id=eid, revision=1, updated=0, seq=31))
    failing = wait_until(lambda: (s := status(alerting))["failing"] and s, timeout=20, what="failing shown")
    assert failing["pending"] == 1 and "503" in failing["last_error"], failing
    alerting.publish(
        TOPIC_ALERTS, alert("escalate", equipment_id=eid, severity="critical", updated=5, revision=2)
    )
    alerting.publish(
        TOPIC_ALERTS, alert("clear", equipment_id=eid, severity="critical", updated=9, revision=3)
    )
    wait_until(lambda: len(hook.delivered()) == 3, timeout=40, what="three changes delivered")
    got = hook.delivered()
    assert [(r.body["alert_id"], r.body["change"]) for r in got] == [
        (f"{eid}:rul_low:1", "open"),
        (f"{eid}:rul_low:1", "escalate"),
        (f"{eid}:rul_low:1", "clear"),
    ]
    assert got[0].body["reading"]["seq"] == 31 and got[0].body["text"].startswith("[warning]")
    for r in got:
        assert r.key == r.body["id"] and hook.attempts(r.key) == [503, 503, 503, 200]
    # The counts are read once the outbox is empty and the last delivery is counted (the sender writes
    # both in one transaction; the endpoint reads the outbox, then the status).
    final = wait_until(
        lambda: (s := status(alerting))["pending"] == 0 and s["delivered"] >= 3 and s,
        timeout=10,
        what="outbox empty and the last delivery counted",
    )
    assert (final["failing"], final["delivered"], final["consecutive_failures"]) == (False, 3, 0)


def test_a_change_written_before_alerting_is_killed_is_sent_after_it_restarts(
    alerting: Alerting, webhook: tuple[Webhook, str]
) -> None:
    hook, _ = webhook
    hook.down = True
    eid = machine()
    alerting.publish(TOPIC_ALERTS, alert("open", equipment_id=eid, revision=1))
    wait_until(
        lambda: hook.receipts, timeout=20, what="an attempt (so the change and its notification are written)"
    )
    alerting.app.kill()  # SIGKILL: the notification is only in the outbox now
    hook.down = False
    alerting.start_app()
    alerting.sidecar.wait_app_ready()
    (delivered,) = wait_until(hook.delivered, timeout=30, what="delivered after the restart")
    assert delivered.body["alert_id"] == f"{eid}:rul_low:1" and delivered.body["change"] == "open"
    assert set(hook.attempts(delivered.key)) == {503, 200} and hook.attempts(delivered.key)[-1] == 200
    assert {r.key for r in hook.receipts} == {delivered.key}, "one change, one key, whatever the attempts"
    wait_until(lambda: status(alerting)["pending"] == 0, timeout=10, what="outbox empty")


def test_a_send_cut_short_by_a_kill_is_repeated_with_the_same_key_and_counted_once(
    alerting: Alerting, webhook: tuple[Webhook, str]
) -> None:
    """The webhook took the request, but alerting died before it heard back: after the restart and
    the claim's expiry it sends again with the same Idempotency-Key, and the receiver drops the repeat."""
    hook, _ = webhook
    hook.hold = True
    eid = machine()
    alerting.publish(TOPIC_ALERTS, alert("open", equipment_id=eid, revision=1))
    (first,) = wait_until(hook.delivered, timeout=20, what="the request in flight")
    alerting.app.kill()
    hook.release.set()
    hook.hold = False
    alerting.start_app()
    alerting.sidecar.wait_app_ready()
    wait_until(lambda: len(hook.attempts(first.key)) >= 2, timeout=30, what="the repeat")
    assert [r.key for r in hook.delivered()] == [first.key], "exactly one delivery in effect"
    assert hook.attempts(first.key)[:2] == [200, 200]
    wait_until(lambda: status(alerting)["pending"] == 0, timeout=10, what="outbox empty")
    assert httpx.get(f"{alerting.url}/healthz", timeout=5).status_code == 200
