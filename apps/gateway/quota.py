"""How many machines a key may introduce: each new equipment id becomes an EquipmentActor, its state,
its archive folder and its fleet entry, so a key sending readings for ever-new ids would grow the
platform without bound. A key may name `limit` ids the platform does not know yet per `window` seconds
(a fixed window per key); past that the whole call is refused (429, Retry-After until the window ends).

"Known" is what this replica has let through (bounded: the oldest are forgotten past `max_known`) plus
the machines alerting lists in its fleet, which the gateway reads when a call would exceed the quota
(at most every `refresh_seconds`), so a restarted gateway does not count a running fleet as new.
In memory, per gateway replica, like the rate limits.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from apps.common.contracts import EQUIPMENT_ID_PATTERN

QUOTA_NAME = "new_equipment_ids"
_ID = re.compile(EQUIPMENT_ID_PATTERN)


class NewIdQuota(BaseModel):
    """At most `limit` equipment ids new to the platform per key every `window_seconds`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    limit: int = Field(ge=1)
    window_seconds: float = Field(gt=0)


@dataclass(slots=True)
class _Window:
    started: float
    used: int


@dataclass(frozen=True, slots=True)
class QuotaExceeded:
    new: int  # ids of the call not known yet
    used: int  # new ids the key introduced in the current window
    retry_after: float  # seconds until the window ends


class NewIdLedger:
    def __init__(
        self,
        quota: NewIdQuota,
        clock: Callable[[], float] = time.monotonic,
        max_known: int = 1_000_000,
        max_keys: int = 100_000,
    ) -> None:
        self.quota = quota
        self.clock = clock
        self.max_known = max_known
        self.max_keys = max_keys
        self._known: dict[str, None] = {}  # insertion-ordered: the oldest are forgotten first
        self._windows: dict[str, _Window] = {}

    def unknown(self, ids: Iterable[str]) -> set[str]:
        return {i for i in ids if i not in self._known}

    def learn(self, ids: Iterable[str]) -> None:
        """Ids the platform knows (alerting's fleet, or a call let through)."""
        for i in ids:
            self._known[i] = None
        excess = len(self._known) - self.max_known
        if excess > 0:
            for i in list(self._known)[:excess]:
                del self._known[i]

    def admit(self, key_id: str, ids: Iterable[str]) -> QuotaExceeded | None:
        """Count the call's new ids against the key's window and remember them; or refuse the whole call."""
        new = self.unknown(ids)
        if not new:
            return None
        now = self.clock()
        window = self._windows.get(key_id)
        if window is None or now - window.started >= self.quota.window_seconds:
            if window is None and len(self._windows) >= self.max_keys:
                self._forget_ended(now)
            window = self._windows[key_id] = _Window(now, 0)
        if window.used + len(new) > self.quota.limit:
            return QuotaExceeded(len(new), window.used, window.started + self.quota.window_seconds - now)
        window.used += len(new)
        self.learn(new)
        return None

    def _forget_ended(self, now: float) -> None:
        self._windows = {
            k: w for k, w in self._windows.items() if now - w.started < self.quota.window_seconds
        }


def equipment_ids(body: bytes) -> set[str]:
    """The equipment ids a readings batch (`{"readings": [...]}` or a bare list) names. Ids that cannot be
    one, and a body that is no batch at all, count for nothing: ingestion refuses those before any actor."""
    try:
        batch = json.loads(body)
    except (ValueError, RecursionError):
        return set()
    readings = batch.get("readings") if isinstance(batch, dict) else batch
    if not isinstance(readings, list):
        return set()
    found = (r.get("equipment_id") for r in readings if isinstance(r, dict))
    return {i for i in found if isinstance(i, str) and _ID.fullmatch(i)}
