"""`vigil alerts [--open]` and `vigil alerts ack ID [--note ...]`: the alerts page for a terminal.

Talks to alerting's HTTP API on its port in dapr.yaml (as `curl localhost:8005/v1/alerts` would), or,
given an API key (`--key` or `VIGIL_API_KEY`), to the gateway's `/api/v1/alerts`, which records the
key's name as who acknowledged.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import httpx

from apps.common.names import ALERTING_APP_ID, GATEWAY_APP_ID
from vigil.command import vigil_command
from vigil.replay import app_token_headers, default_app_url, positive_int

TIMEOUT: Final = 30.0
ACTIVE_STATES: Final = ("open", "acknowledged")  # what still needs an operator: not cleared or resolved


class AlertsError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Endpoint:
    """alerting's own API, or the gateway's (prefix /api, an API key)."""

    base_url: str
    key: str | None = None
    app_token: dict[str, str] = field(default_factory=dict)  # alerting's, from the run of `vigil up`

    @property
    def alerts_path(self) -> str:
        return "/api/v1/alerts" if self.key else "/v1/alerts"

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key} if self.key else self.app_token

    @property
    def what(self) -> str:
        return f"the gateway at {self.base_url}" if self.key else f"alerting at {self.base_url}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--open", action="store_true", help="only alerts still active (open or acknowledged), not closed ones"
    )
    parser.add_argument("--machine", default=None, help="only this machine's alerts")
    parser.add_argument("--limit", type=positive_int, default=100, help="newest N alerts (100)")
    parser.add_argument("--url", default=None, help="alerting base URL, or the gateway's with --key")
    parser.add_argument(
        "--key",
        default=os.environ.get("VIGIL_API_KEY"),
        help="an API key: go through the gateway (default: $VIGIL_API_KEY; without: alerting directly)",
    )
    sub = parser.add_subparsers(dest="action", metavar="ack", title="actions (none: list alerts)")
    ack = sub.add_parser("ack", help="acknowledge an alert", description="acknowledge an alert")
    ack.add_argument("alert_id", metavar="ID", help="the alert's id (first column of `vigil alerts`)")
    ack.add_argument("--note", default="", help="why, or what is being done (kept in its history)")
    ack.add_argument(
        "--by", default=None, help="who acknowledges (default: your login; the key's name via the gateway)"
    )


def _login() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in this environment: alerting records "unknown"
        return ""


def endpoint(args: argparse.Namespace) -> Endpoint:
    if args.key:
        return Endpoint(args.url or default_app_url(GATEWAY_APP_ID, 8000), args.key)
    if args.url:  # the run's app token goes only to the app of the run template
        return Endpoint(args.url)
    return Endpoint(default_app_url(ALERTING_APP_ID, 8005), app_token=app_token_headers(ALERTING_APP_ID))


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else f"HTTP {response.status_code}: {response.text[:200]}"


def _call(client: httpx.Client, where: Endpoint, method: str, path: str, **kwargs: Any) -> Any:
    try:
        response = client.request(method, f"{where.base_url}{path}", headers=where.headers, **kwargs)
    except httpx.ConnectError:
        raise AlertsError(
            f"cannot connect to {where.what}: is the platform running? Start it with "
            f"`{vigil_command()} up` (or `make demo`), or point --url at it"
        ) from None
    except httpx.HTTPError as exc:
        raise AlertsError(f"{where.what} did not answer: {exc or type(exc).__name__}") from None
    if response.status_code >= 400:
        raise AlertsError(_detail(response))
    return response.json()


def list_alerts(client: httpx.Client, where: Endpoint, args: argparse.Namespace) -> list[dict[str, Any]]:
    base = {"limit": args.limit, **({"equipment_id": args.machine} if args.machine else {})}
    if not args.open:
        return list(_call(client, where, "GET", where.alerts_path, params=base))
    rows = [
        row
        for state in ACTIVE_STATES
        for row in _call(client, where, "GET", where.alerts_path, params={**base, "state": state})
    ]
    rows.sort(key=lambda row: row["raised_at"], reverse=True)  # as alerting answers: newest raised first
    return rows[: args.limit]


def _time(value: str | None) -> str:
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def format_table(rows: list[dict[str, Any]]) -> str:
    header = ("ID", "STATE", "SEVERITY", "MACHINE", "KIND", "RUL", "RAISED (UTC)", "ACKNOWLEDGED BY")
    lines = [
        (
            row["id"],
            row["state"],
            row["severity"],
            row["equipment_id"],
            row["kind"],
            "-" if row.get("predicted_rul") is None else f"{row['predicted_rul']:.0f}",
            _time(row.get("raised_at")),
            row.get("acknowledged_by") or "-",
        )
        for row in rows
    ]
    widths = [max(len(str(cells[i])) for cells in [header, *lines]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
                     for cells in [header, *lines])  # fmt: skip


def run_alerts(args: argparse.Namespace) -> int:
    where = endpoint(args)
    try:
        with httpx.Client(timeout=TIMEOUT) as client:
            if args.action == "ack":
                body: dict[str, str] = {"note": args.note}
                if not where.key:  # the gateway takes who from the key and refuses a `by`
                    body["by"] = args.by or _login()
                path = f"{where.alerts_path}/{quote(args.alert_id, safe=':')}/ack"
                alert = _call(client, where, "POST", path, json=body)
                sys.stdout.write(
                    f"{alert['id']}: {alert['state']} by {alert.get('acknowledged_by') or '-'} "
                    f"at {_time(alert.get('acknowledged_at'))}\n"
                )
                return 0
            rows = list_alerts(client, where, args)
    except AlertsError as exc:
        sys.stderr.write(f"vigil alerts: error: {exc}\n")
        return 1
    if not rows:
        sys.stdout.write("no active alerts\n" if args.open else "no alerts\n")
        return 0
    sys.stdout.write(format_table(rows) + "\n")
    return 0
