"""`vigil models list|show|promote|rollback`: the model registry for a terminal.

Talks to training's HTTP API on its port in dapr.yaml (as `curl localhost:8004/v1/models` would), with
the run's app token when `vigil up` made one, or to `--url`. Unknown models and versions, a version that
is already champion and a rollback with nowhere to go are one-line errors and exit code 1.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote

import httpx

from apps.common.names import TRAINING_APP_ID
from apps.common.registry import DriftReport
from vigil.command import vigil_command
from vigil.replay import app_token_headers, default_app_url, positive_int

TIMEOUT: Final = 30.0
# The champion's numbers `list` shows, by model kind (a card without a kind is a `rul` model's).
SHOWN_METRICS: Final = {
    "rul": ("rmse_capped", "rmse", "phm08_score", "coverage"),
    "failure": ("roc_auc", "f1", "log_loss", "threshold"),
    "anomaly": ("false_alarm_rate", "separation_error", "detection_rate", "threshold"),
}
# What the gate compares per kind (apps/training/kind_*.py: primary, then guard), as `show` heads them.
GATE_METRICS: Final = {
    "rul": (("rmse_capped", "RMSE"), ("phm08_score", "PHM08")),
    "failure": (("log_loss", "LOG-LOSS"), ("roc_auc", "ROC-AUC")),
    "anomaly": (("separation_error", "SEP-ERROR"), ("false_alarm_rate", "FALSE-ALARMS")),
}


def _kind(cards: list[dict[str, Any]]) -> str:
    return next((c["kind"] for c in reversed(cards) if c.get("kind")), "rul")


class ModelsError(RuntimeError):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None, help="training's base URL (default: its port in dapr.yaml)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="every model: champion, versions, the champion's numbers")
    show = sub.add_parser("show", help="one model: versions, gate decisions, champion history, drift")
    show.add_argument("name", help="the model's name, e.g. turbofan-rul")
    show.add_argument("--version", type=positive_int, default=None, help="one version's model card")
    promote = sub.add_parser("promote", help="make a version champion, whatever the gate said")
    promote.add_argument("name")
    promote.add_argument("version", type=positive_int)
    rollback = sub.add_parser("rollback", help="back to the champion before the current one")
    rollback.add_argument("name")
    rollback.add_argument("--to", type=positive_int, default=None, help="an earlier champion's version")
    for action in (promote, rollback):
        action.add_argument("--note", default="", help="why (kept in the champion history)")
        action.add_argument("--by", default=None, help="who (default: your login)")


def _login() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "unknown"


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list):  # a 422 from request validation: the first problem, in words
        detail = "; ".join(str(d.get("msg", d)) for d in detail if isinstance(d, dict)) or None
    return str(detail) if detail else f"HTTP {response.status_code}: {response.text[:200]}"


class Training:
    def __init__(self, client: httpx.Client, base_url: str, headers: dict[str, str]) -> None:
        self.client, self.base_url, self.headers = client, base_url, headers

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, f"{self.base_url}{path}", headers=self.headers, **kwargs)
        except httpx.ConnectError:
            raise ModelsError(
                f"cannot connect to training at {self.base_url}: is the platform running? Start it with "
                f"`{vigil_command()} up` (or `make demo`), or point --url at it"
            ) from None
        except httpx.HTTPError as exc:
            raise ModelsError(
                f"training at {self.base_url} did not answer: {exc or type(exc).__name__}"
            ) from None
        if response.status_code >= 400:
            raise ModelsError(_detail(response))
        return response.json()


def _time(value: str | None) -> str:
    return datetime.fromisoformat(value).astimezone(UTC).strftime("%Y-%m-%d %H:%M") if value else "-"


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    cells = [tuple(str(c) for c in header), *(tuple(str(c) for c in row) for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def format_list(models: list[dict[str, Any]]) -> str:
    rows = []
    for model in models:
        champion = next((v for v in model["versions"] if v["version"] == model["champion"]), None)
        metrics = champion["metrics"] if champion else {}
        latest = model["versions"][-1]["version"] if model["versions"] else None
        kind = _kind(model["versions"])
        numbers = ", ".join(f"{m}={_num(metrics.get(m))}" for m in SHOWN_METRICS[kind])
        rows.append((model["name"], kind, _num(model["champion"]), len(model["versions"]), _num(latest),
                     numbers if champion else "-"))  # fmt: skip
    return table(("MODEL", "KIND", "CHAMPION", "VERSIONS", "LATEST", "CHAMPION'S NUMBERS"), rows)


def format_card(card: dict[str, Any], champion: int | None) -> str:
    lines = [
        f"{card['name']} v{card['version']}{'  (champion)' if card['version'] == champion else ''}",
        f"created      {_time(card['created_at'])} UTC, profile {card['profile']}, kind "
        f"{card.get('kind') or 'rul'}",
        f"trained on   {card['n_train_units']} runs, {card['n_train_rows']} rows, data sha256 "
        f"{card['training_data_fingerprint'][:12]}",
        f"features     {len(card['feature_names'])}: {', '.join(card['feature_names'][:6])}"
        + (", ..." if len(card["feature_names"]) > 6 else ""),
        "metrics      " + ", ".join(f"{k}={_num(v)}" for k, v in sorted(card["metrics"].items())),
        *(
            [f"alerts at   {', '.join(f'{k} {_num(v)}' for k, v in card['alert_thresholds'].items())}"]
            if card.get("alert_thresholds")
            else []
        ),
        "versions     "
        + ", ".join(f"{k} {v}" for k, v in sorted(card.get("framework_versions", {}).items())),
    ]
    return "\n".join(lines)


def format_model(view: dict[str, Any]) -> str:
    out = [f"{view['name']} (profile {view['profile']}): champion {_num(view['champion'])}", ""]
    decisions = {d["candidate_version"]: d for d in view["decisions"]}
    (primary, primary_label), (guard, guard_label) = GATE_METRICS[_kind(view["versions"])]
    rows = []
    for card in view["versions"]:
        d = decisions.get(card["version"])
        cand, champ = (d or {}).get("candidate") or {}, (d or {}).get("champion") or {}
        gate = (
            "-"
            if d is None
            else ("promoted" if d["promoted"] else "kept champion") + (" (forced)" if d["forced"] else "")
        )
        rows.append((f"v{card['version']}{' *' if card['version'] == view['champion'] else ''}",
                     _time(card["created_at"]), _num(cand.get(primary)), _num(champ.get(primary)),
                     _num(cand.get(guard)), _num(champ.get(guard)), gate,
                     "" if d is None else d["reason"]))  # fmt: skip
    header = ("VERSION", "CREATED (UTC)", primary_label, "VS CHAMP", guard_label, "VS CHAMP", "GATE", "WHY")
    out += [
        "versions (numbers on the held-out data, the champion's at the time beside them):",
        table(header, rows),
    ]
    if view["champion_history"]:
        changes = [(_time(c["at"]), c["action"], f"v{c['version']}", _num(c["previous"]), c["by"],
                    c["note"] or c["reason"]) for c in view["champion_history"]]  # fmt: skip
        out += ["", "champion history:", table(("AT (UTC)", "ACTION", "TO", "FROM", "BY", "WHY"), changes)]
    drift = view.get("drift")
    if drift:
        report = DriftReport.model_validate(drift)
        top = ", ".join(f"{f.name} {f.psi:.3f}" for f in report.features[:5])
        when = _time(drift["computed_at"])
        out += ["", f"feature drift of v{report.version} ({when} UTC, {report.basis()}): max PSI "
                f"{report.max_psi:.3f} ({report.level}); highest: {top}"]  # fmt: skip
        if report.fallback:
            out.append(f"  (from the archive: {report.fallback})")
        if report.ignored:
            out.append(f"  (not measured, the model does not use them: {', '.join(report.ignored)})")
    else:
        out += ["", "feature drift: not measured yet (the retrain schedule measures it)"]
    return "\n".join(out)


def run_models(args: argparse.Namespace) -> int:
    base = args.url or default_app_url(TRAINING_APP_ID, 8004)
    headers = {} if args.url else app_token_headers(TRAINING_APP_ID)  # the run's token, for its own app
    try:
        with httpx.Client(timeout=TIMEOUT) as client:
            training = Training(client, base, headers)
            out = _act(training, args)
    except ModelsError as exc:
        sys.stderr.write(f"vigil models: error: {exc}\n")
        return 1
    sys.stdout.write(out + "\n")
    return 0


def _act(training: Training, args: argparse.Namespace) -> str:
    if args.action == "list":
        models = training.call("GET", "/v1/models")
        return format_list(models) if models else "no models"
    path = f"/v1/models/{quote(args.name, safe='')}"
    if args.action == "show":
        view = training.call("GET", path)
        if args.version is None:
            return format_model(view)
        card = next((c for c in view["versions"] if c["version"] == args.version), None)
        if card is None:
            known = ", ".join(f"v{c['version']}" for c in view["versions"]) or "none yet"
            raise ModelsError(f"{args.name} has no version {args.version} (registered: {known})")
        return format_card(card, view["champion"])
    body: dict[str, Any] = {"by": args.by or _login(), "note": args.note}
    if args.action == "promote":
        change = training.call("POST", f"{path}/promote", json={**body, "version": args.version})
    else:
        change = training.call(
            "POST", f"{path}/rollback", json={**body, **({"version": args.to} if args.to else {})}
        )
    was = "none" if change["previous"] is None else f"v{change['previous']}"
    return f"{args.name}: champion v{change['version']} (was {was}), {change['action']} by {change['by']}"
