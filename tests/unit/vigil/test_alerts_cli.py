"""`vigil alerts`: against a stub speaking alerting's (and the gateway's) alert routes over real HTTP."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from localdapr.ports import free_port
from vigil.cli import main


def alert(alert_id: str, state: str, raised: str, **extra: Any) -> dict[str, Any]:
    machine, kind, _ = alert_id.split(":")
    return {
        "id": alert_id,
        "equipment_id": machine,
        "kind": kind,
        "severity": "critical",
        "state": state,
        "predicted_rul": 12.4,
        "raised_at": raised,
        "acknowledged_by": None,
        **extra,
    }


class Stub:
    def __init__(self) -> None:
        self.alerts = [
            alert("m-1:rul_low:1", "open", "2026-01-01T10:00:00+00:00"),
            alert("m-2:silent:1", "acknowledged", "2026-01-01T11:00:00+00:00", acknowledged_by="ann"),
            alert("m-3:rul_low:1", "cleared", "2026-01-01T12:00:00+00:00", predicted_rul=None),
        ]
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []


@pytest.fixture
def stub() -> Iterator[tuple[Stub, str]]:
    state = Stub()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet: pytest shows failures, not access logs
            pass

        def answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            state.requests.append(("GET", url.path, dict(self.headers), query))
            if url.path.endswith("/api/v1/alerts") and self.headers.get("X-API-Key") != "vgl_good":
                self.answer(401, {"detail": "unknown API key"})
                return
            rows = [a for a in state.alerts if query.get("state") in (None, a["state"])]
            self.answer(200, sorted(rows, key=lambda a: a["raised_at"], reverse=True))

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            state.requests.append(("POST", self.path, dict(self.headers), body))
            alert_id = self.path.split("/")[-2]
            found = [a for a in state.alerts if a["id"] == alert_id]
            if not found:
                self.answer(404, {"detail": f"no alert {alert_id!r}"})
            elif found[0]["state"] == "cleared":
                self.answer(409, {"detail": "already cleared: the machine's condition ended at T"})
            else:
                who = body.get("by") or "key-name"
                self.answer(
                    200, {**found[0], "state": "acknowledged", "acknowledged_by": who,
                          "acknowledged_at": "2026-01-01T13:00:00+00:00"},
                )  # fmt: skip

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_lists_alerts_newest_first(stub: tuple[Stub, str], capsys: pytest.CaptureFixture[str]) -> None:
    state, url = stub
    assert main(["alerts", "--url", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["ID", "STATE", "SEVERITY", "MACHINE"]
    assert [line.split()[0] for line in lines[1:]] == ["m-3:rul_low:1", "m-2:silent:1", "m-1:rul_low:1"]
    assert "2026-01-01 10:00:00" in lines[3] and " 12 " in lines[3] and lines[2].endswith("ann")
    assert state.requests[0][1] == "/v1/alerts" and state.requests[0][3] == {"limit": "100"}


def test_open_lists_only_active_alerts(stub: tuple[Stub, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, url = stub
    assert main(["alerts", "--open", "--url", url]) == 0
    rows = capsys.readouterr().out.splitlines()[1:]
    assert [row.split()[:2] for row in rows] == [["m-2:silent:1", "acknowledged"], ["m-1:rul_low:1", "open"]]


def test_ack_with_a_note(stub: tuple[Stub, str], capsys: pytest.CaptureFixture[str]) -> None:
    state, url = stub
    assert main(["alerts", "--url", url, "ack", "m-1:rul_low:1", "--note", "on my way", "--by", "bob"]) == 0
    assert capsys.readouterr().out == "m-1:rul_low:1: acknowledged by bob at 2026-01-01 13:00:00\n"
    method, path, _, body = state.requests[-1]
    assert (method, path, body) == (
        "POST",
        "/v1/alerts/m-1:rul_low:1/ack",
        {"note": "on my way", "by": "bob"},
    )


@pytest.mark.parametrize(
    ("alert_id", "message"),
    [("nope:x:1", "no alert 'nope:x:1'"), ("m-3:rul_low:1", "already cleared: the machine's condition")],
)
def test_ack_refusals_are_one_line_errors(
    stub: tuple[Stub, str], alert_id: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, url = stub
    assert main(["alerts", "--url", url, "ack", alert_id]) == 1
    err = capsys.readouterr().err
    assert err == f"vigil alerts: error: {err.split('error: ', 1)[1]}" and message in err
    assert err.count("\n") == 1


def test_through_the_gateway_with_a_key(stub: tuple[Stub, str], capsys: pytest.CaptureFixture[str]) -> None:
    state, url = stub
    assert main(["alerts", "--url", url, "--key", "vgl_good", "ack", "m-1:rul_low:1", "--note", "n"]) == 0
    method, path, headers, body = state.requests[-1]
    # The gateway records the key's name as who; it refuses a `by` of the caller's choosing.
    assert (path, body, headers["X-API-Key"]) == (
        "/api/v1/alerts/m-1:rul_low:1/ack",
        {"note": "n"},
        "vgl_good",
    )
    assert main(["alerts", "--url", url, "--key", "vgl_bad"]) == 1
    assert "vigil alerts: error: unknown API key" in capsys.readouterr().err


def test_nothing_listening_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["alerts", "--url", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"vigil alerts: error: cannot connect to alerting at {url}: is the platform running?"
    )
    assert err.count("\n") == 1 and "Traceback" not in err
    assert main(["alerts", "--url", url, "--key", "k", "ack", "a:b:1"]) == 1
    assert f"cannot connect to the gateway at {url}" in capsys.readouterr().err
