"""bindings.cron: an input binding that triggers the app on a schedule (schedule.py has the syntax).

As in daprd, each fire is an event with no data and the metadata `timeZone` ("Local": the runner's
zone, whatever `CRON_TZ` the schedule names) and `readTimeUTC` (Go's time format); fires are not
serialised, so a slow app can be triggered again before it answered; the app's failure is dropped
(there is no redelivery of a missed fire); the next fire is computed from the moment of this one.
"""

from __future__ import annotations

import asyncio
import logging
import time

from localdapr.bindings import schedule as cron
from localdapr.bindings.base import EventHandler, InputBinding, ReadEvent
from localdapr.bindings.gocompat import time_string_utc
from localdapr.components.spec import ComponentSpec

log = logging.getLogger("localdapr.bindings")


class CronBinding(InputBinding):
    def __init__(self, name: str, schedule: cron.Schedule) -> None:
        self.name = name
        self.schedule = schedule

    @classmethod
    def from_spec(cls, spec: ComponentSpec) -> CronBinding:
        text = spec.metadata.get("schedule", "")
        if not text:
            raise spec.fail("schedule not set (metadata field 'schedule', e.g. \"@every 15m\")")
        try:
            return cls(spec.name, cron.parse(text))
        except cron.CronError as exc:
            raise spec.fail(f"invalid schedule format '{text}': {exc}") from exc

    async def read(self, handler: EventHandler) -> None:
        firing: set[asyncio.Task[None]] = set()
        try:
            due = self.schedule.next(time.time())
            while due is not None:
                wait = due - time.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue  # re-check: the loop's clock and the wall clock can disagree slightly
                now = time.time()
                task = asyncio.create_task(self._fire(handler))
                firing.add(task)
                task.add_done_callback(firing.discard)
                due = self.schedule.next(now)
            await asyncio.Future()  # no time ever matches (e.g. 30 February): idle until cancelled
        finally:
            for task in firing:
                task.cancel()
            await asyncio.gather(*firing, return_exceptions=True)

    async def _fire(self, handler: EventHandler) -> None:
        event = ReadEvent(metadata={"timeZone": "Local", "readTimeUTC": time_string_utc(time.time())})
        try:
            await handler(event)
        except Exception as exc:  # daprd's cron ignores the app's failure; the next fire is on schedule
            log.debug("cron binding %s: fire not taken by the app: %s", self.name, exc)
