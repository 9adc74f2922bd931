"""The demo's webhook inbox: prints what the notifications binding delivers, refuses other paths."""

from __future__ import annotations

import socket

import httpx
import pytest

from localdapr.ports import free_port
from vigil.inbox import WebhookInbox, summary_of


def test_a_delivery_is_shown_by_its_text() -> None:
    lines: list[str] = []
    inbox = WebhookInbox(f"http://127.0.0.1:{free_port()}/vigil/alerts", lines.append)
    assert inbox.start()
    try:
        answer = httpx.post(inbox.url, json={"text": "[critical] a-1 open: RUL 12", "id": "n1"})
        wrong = httpx.post(inbox.url.replace("/vigil/alerts", "/other"), json={"text": "x"})
    finally:
        inbox.stop()
    assert answer.status_code == 200
    assert wrong.status_code == 404
    assert lines == ["[critical] a-1 open: RUL 12"]
    assert inbox.received == 1


def test_a_taken_port_is_left_alone() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        inbox = WebhookInbox(f"http://127.0.0.1:{taken.getsockname()[1]}/hook", print)
        assert inbox.start() is False


def test_summaries_of_odd_bodies_say_what_came() -> None:
    assert summary_of(b"not json") == "(not JSON: 8 bytes)"
    assert summary_of(b'{"id": 1}').startswith("(JSON without a text field")


def test_a_url_without_a_port_is_refused() -> None:
    with pytest.raises(ValueError, match="host and a port"):
        WebhookInbox("https://hooks.example.com/x", print)
