"""Reminders and timers: their records, the bodies delivered to the app, and reminder persistence.

Reminders live in the actor state store, one key per reminder:
`actors||{actorType}||{actorId}||reminder||{name}` (daprd before 1.14 kept them under
`actors||{actorType}`; daprd 1.14+ keeps them in its Scheduler service, which localdapr does not
have). One key each means firing a reminder rewrites only its own record (its fire count), and a
restarted sidecar finds every reminder of a type with one prefix scan.
Timers are in memory only and die with the actor's activation, as in daprd.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from localdapr.actors.schedule import Schedule
from localdapr.state.base import StateItem, StateStore

_NO_DATA = object()
LOAD_CHUNK = 500  # reminder records read per bulk get when a sidecar reloads a type's reminders


def reminder_prefix(actor_type: str) -> str:
    return f"actors||{actor_type}||"


def reminder_key(actor_type: str, actor_id: str, name: str) -> str:
    return f"{reminder_prefix(actor_type)}{actor_id}||reminder||{name}"


def _rfc3339(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


@dataclass(slots=True)
class Registration:
    """A reminder or timer as the app registered it (strings kept verbatim for the callback body)."""

    actor_type: str
    actor_id: str
    name: str
    due_time: str
    period: str
    ttl: str
    data: Any  # the registered JSON value, or _NO_DATA when the request had no "data" key
    callback: str = ""  # timers only
    schedule: Schedule | None = None
    registered_at: float = 0.0
    firing: bool = False  # a callback for it is in flight
    cancelled: bool = False  # unregistered while firing: stop after the callback returns

    @classmethod
    def from_request(
        cls, actor_type: str, actor_id: str, name: str, body: dict[str, Any], now: float | None = None
    ) -> Registration:
        now = time.time() if now is None else now
        due_time = str(body.get("dueTime") or "")
        period = str(body.get("period") or "")
        ttl = str(body.get("ttl") or "")
        reg = cls(
            actor_type=actor_type,
            actor_id=actor_id,
            name=name,
            due_time=due_time,
            period=period,
            ttl=ttl,
            data=body["data"] if "data" in body else _NO_DATA,
            callback=str(body.get("callback") or ""),
            registered_at=now,
        )
        reg.schedule = Schedule.parse(due_time, period, ttl, now)
        return reg

    @property
    def key(self) -> str:
        return reminder_key(self.actor_type, self.actor_id, self.name)

    def reminder_body(self) -> dict[str, Any]:
        """What daprd PUTs to `/actors/{t}/{id}/method/remind/{name}` (contract 3.4).

        `data` is echoed verbatim and omitted when none was registered; the SDK needs both
        `dueTime` and `period` keys (`period` is "" for a one-shot reminder).
        """
        body: dict[str, Any] = {}
        if self.data is not _NO_DATA and self.data is not None:
            body["data"] = self.data
        body["dueTime"] = self.due_time
        body["period"] = self.period
        return body

    def timer_body(self) -> dict[str, Any]:
        """What daprd PUTs to `/actors/{t}/{id}/method/timer/{name}`: the SDK needs `callback` and `data`."""
        return {
            "callback": self.callback,
            "data": None if self.data is _NO_DATA else self.data,
            "dueTime": self.due_time,
            "period": self.period,
        }

    def public(self) -> dict[str, Any]:
        """The GET reminder answer."""
        out = self.reminder_body()
        if self.ttl:
            out["ttl"] = self.ttl
        return out

    def to_record(self) -> bytes:
        assert self.schedule is not None
        s = self.schedule
        record: dict[str, Any] = {
            "actorType": self.actor_type,
            "actorID": self.actor_id,
            "name": self.name,
            "dueTime": self.due_time,
            "period": self.period,
            "ttl": self.ttl,
            "registeredTime": _rfc3339(self.registered_at),
            "schedule": {
                "first": s.first,
                "period": s.period,
                "repetitions": s.repetitions,
                "expiresAt": s.expires_at,
                "fired": s.fired,
            },
        }
        if self.data is not _NO_DATA:
            record["data"] = self.data
        return json.dumps(record, separators=(",", ":")).encode()

    @classmethod
    def from_record(cls, raw: bytes) -> Registration:
        doc = json.loads(raw)
        s = doc["schedule"]
        return cls(
            actor_type=doc["actorType"],
            actor_id=doc["actorID"],
            name=doc["name"],
            due_time=doc.get("dueTime", ""),
            period=doc.get("period", ""),
            ttl=doc.get("ttl", ""),
            data=doc["data"] if "data" in doc else _NO_DATA,
            schedule=Schedule(
                first=float(s["first"]),
                period=s.get("period"),
                repetitions=s.get("repetitions"),
                expires_at=s.get("expiresAt"),
                fired=int(s.get("fired", 0)),
            ),
        )


@dataclass(slots=True)
class Scheduled:
    """A running reminder or timer task and its registration."""

    task: asyncio.Task[None]
    reg: Registration

    def stop(self) -> None:
        # Cancelling a task that is waiting for the app's answer would cut the callback off midway
        # (the actor often unregisters itself from inside that very callback): flag it instead.
        if self.reg.firing and self.task is not asyncio.current_task():
            self.reg.cancelled = True
        elif self.task is not asyncio.current_task():
            self.task.cancel()
        else:
            self.reg.cancelled = True


class ReminderStore:
    """Reminder records in the actor state store (physical keys without an app prefix: per type)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    async def save(self, reg: Registration) -> None:
        await self.store.set(StateItem(key=reg.key, value=reg.to_record()))

    async def delete(self, actor_type: str, actor_id: str, name: str) -> None:
        await self.store.delete(reminder_key(actor_type, actor_id, name))

    async def get(self, actor_type: str, actor_id: str, name: str) -> Registration | None:
        found = await self.store.get(reminder_key(actor_type, actor_id, name))
        return Registration.from_record(found.data) if found is not None else None

    async def load_type(self, actor_type: str) -> list[Registration]:
        out: list[Registration] = []
        keys = [
            k for k in await self.store.keys_with_prefix(reminder_prefix(actor_type)) if "||reminder||" in k
        ]
        # In bulk reads: a fleet's reminders (10,000 machines, one each) one get at a time were
        # 10,000 round trips to the store before the type's reminders were running again.
        for start in range(0, len(keys), LOAD_CHUNK):
            for found in await self.store.bulk_get(keys[start : start + LOAD_CHUNK]):
                if found is None:
                    continue
                try:
                    out.append(Registration.from_record(found.data))
                except (ValueError, KeyError, TypeError):
                    continue  # a record written by something else; not ours to fire
        return out
