"""Telling people about alerts. Only a logging notifier for now; an output binding comes later.

The service calls the notifier after an alert change is committed, so a notification never
announces something the store does not hold; a failing notifier never fails event handling.
"""

from __future__ import annotations

import logging
from typing import Protocol

from apps.alerting.domain import AlertRecord

log = logging.getLogger("alerting.notify")


class Notifier(Protocol):
    async def notify(self, alert: AlertRecord, previous: AlertRecord | None) -> None: ...


class LoggingNotifier:
    async def notify(self, alert: AlertRecord, previous: AlertRecord | None) -> None:
        before = "new" if previous is None else f"{previous.state}/{previous.severity}"
        log.warning("alert %s: %s -> %s/%s: %s", alert.id, before, alert.state, alert.severity, alert.message)
