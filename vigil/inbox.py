"""The demo's webhook inbox: a stand-in for an operator's chat webhook.

Alerting sends every alert change through the `notifications` output binding to the URL in the secret
`notification:webhook-url` (by default `http://127.0.0.1:8099/vigil/alerts`). With nothing listening
there the demo would only show failed deliveries; `vigil demo` listens there itself and prints each
notification's one-line `text`, so the whole path (alert -> outbox -> binding -> webhook) is visible.
Point the secret at a real webhook and the demo leaves it alone (the port is then free or taken).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Final
from urllib.parse import urlsplit

DEFAULT_WEBHOOK_URL: Final = "http://127.0.0.1:8099/vigil/alerts"
MAX_BODY: Final = 1 << 20


def summary_of(body: bytes) -> str:
    """The line to print for one delivery: the payload's `text`, or why there is none."""
    try:
        payload = json.loads(body)
    except ValueError:
        return f"(not JSON: {len(body)} bytes)"
    if isinstance(payload, dict) and isinstance(payload.get("text"), str):
        return payload["text"]
    return f"(JSON without a text field: {json.dumps(payload)[:200]})"


class WebhookInbox:
    """Accepts POSTs on one URL's path (200) and hands each notification's summary to `show`."""

    def __init__(self, url: str, show: Callable[[str], None]) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"the inbox needs an http URL with a host and a port, not {url!r}")
        self.url = url
        self.host, self.port, self.path = parts.hostname, parts.port, parts.path or "/"
        self.show = show
        self.received = 0
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> bool:
        """Listen; False (and nothing started) when something else already listens on the port."""
        inbox = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                if self.path != inbox.path or not 0 <= length <= MAX_BODY:
                    self.send_error(404 if self.path != inbox.path else 413)
                    return
                body = self.rfile.read(length)
                inbox.received += 1
                inbox.show(summary_of(body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # the summary line is the log

        try:
            self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        except OSError:
            return False
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="webhook-inbox", daemon=True).start()
        return True

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
