"""The typed errors of the alerting service; app.py maps each to its HTTP status."""

from __future__ import annotations

from pydantic import ValidationError


class AlertingError(Exception):
    """Base of the typed errors the HTTP adapter maps to status codes."""


class AlertNotFound(AlertingError):
    """404: no alert (or machine) with that id, whatever the id looks like."""


class AlertClosed(AlertingError):
    """409: the alert is cleared or resolved, so it can be neither acknowledged nor resolved; the
    message says by whom, when and why."""


class EquipmentUnavailable(AlertingError):
    """503: the machine's actor did not answer, so an operator's resolve or retire was not made."""


class MalformedEvent(AlertingError):
    """A pub/sub message that can never be processed (bad JSON, wrong shape): drop it, do not retry."""


def describe(exc: ValidationError, limit: int = 5) -> str:
    """A validation error as one line naming each field: what a dead letter or a 4xx says."""
    parts = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()[:limit]]
    more = exc.error_count() - limit
    return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
