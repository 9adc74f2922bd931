"""Delivering input binding events to the app, as daprd's binding processor does.

Once the app channel is ready, each input binding is read if the app wants it: a binding whose
`direction` names "input" is read at once; otherwise the sidecar asks the app, over HTTP with
`OPTIONS /<route>`, and reads the binding only if the answer is 2xx or 405 (a route that exists for
POST only); anything else means the app does not handle it (logged, as daprd logs it).

Each event is POSTed to `/<route>` with the event data as body, `Content-Type: application/json`
and the event metadata as headers. An answer outside 2xx, or an app that cannot be reached, is retried
under the `components.<name>.inbound` resiliency policy and then reported back to the binding as a
failure; what the binding does with it is its own choice (bindings.cron drops the fire, as in daprd).

The app is reached through an AppSink. HttpAppSink is the HTTP app channel's. An app channel that
speaks gRPC would add a sink that asks AppCallback.ListInputBindings instead of OPTIONS and calls
AppCallback.OnBindingEvent(name, data, metadata); nothing else here depends on the protocol.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp

from localdapr.appchannel import AppChannel
from localdapr.bindings.base import ReadEvent
from localdapr.bindings.runtime import LoadedBinding
from localdapr.resiliency import Resiliency
from localdapr.runtime import DaprRuntime

log = logging.getLogger("localdapr.bindings")


@dataclass(slots=True)
class AppAnswer:
    ok: bool
    body: bytes = b""
    detail: str = ""  # why it failed, for the log and the binding


class AppSink(Protocol):
    async def wants(self, binding: str, route: str) -> bool:
        """Whether the app handles this input binding; raise when the app cannot be asked."""
        ...

    async def deliver(self, binding: str, route: str, event: ReadEvent, timeout: float | None) -> AppAnswer:
        """Hand one event to the app; never raise for the app's failure, answer it."""
        ...


@dataclass(slots=True)
class HttpAppSink:
    channel: AppChannel

    async def wants(self, binding: str, route: str) -> bool:
        resp = await self.channel.request(
            "OPTIONS", route, headers={"content-type": "application/json"}, timeout=10
        )
        return 200 <= resp.status < 300 or resp.status == 405

    async def deliver(self, binding: str, route: str, event: ReadEvent, timeout: float | None) -> AppAnswer:
        headers = {**event.metadata, "content-type": "application/json"}
        try:
            resp = await self.channel.request(
                "POST", route, body=event.data, headers=headers, timeout=timeout or 60
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return AppAnswer(False, detail=f"error invoking app: {str(exc) or type(exc).__name__}")
        if not 200 <= resp.status < 300:
            return AppAnswer(
                False,
                resp.body,
                "fails to send binding event to http app channel, status code: "
                f"{resp.status} body: {resp.body.decode(errors='replace')}",
            )
        return AppAnswer(True, resp.body)


class DeliveryFailed(Exception):
    """The app did not take an input event, after the inbound retries."""


@dataclass
class InputDelivery:
    runtime: DaprRuntime
    sink: AppSink
    resiliency: Resiliency
    readers: dict[str, asyncio.Task[None]] = field(default_factory=dict)

    async def start(self) -> None:
        for name, loaded in self.runtime.bindings.items():
            if not loaded.input:
                continue
            if not loaded.explicit_input:
                try:
                    wanted = await self.sink.wants(name, loaded.route)
                except Exception as exc:  # daprd logs it and reads the other bindings
                    log.warning(
                        "[%s] could not ask the app about input binding %s (route %s): %s",
                        self.runtime.app_id,
                        name,
                        loaded.route,
                        exc,
                    )
                    continue
                if not wanted:
                    log.info(
                        "[%s] app has not subscribed to binding %s (OPTIONS /%s)",
                        self.runtime.app_id,
                        name,
                        loaded.route.lstrip("/"),
                    )
                    continue
            self.readers[name] = asyncio.create_task(self._read(name, loaded), name=f"binding-{name}")
            log.info(
                "[%s] reading input binding %s -> /%s", self.runtime.app_id, name, loaded.route.lstrip("/")
            )

    async def stop(self) -> None:
        for task in self.readers.values():
            task.cancel()
        await asyncio.gather(*self.readers.values(), return_exceptions=True)
        self.readers.clear()

    async def _read(self, name: str, loaded: LoadedBinding) -> None:
        async def handler(event: ReadEvent) -> bytes:
            return await self._deliver(name, loaded.route, event)

        try:
            await loaded.instance.read(handler)
        except Exception:
            log.exception("[%s] input binding %s stopped reading", self.runtime.app_id, name)

    async def _deliver(self, name: str, route: str, event: ReadEvent) -> bytes:
        policy = self.resiliency.for_binding_inbound(name)
        delays = policy.retry.delays() if policy.retry else iter(())
        while True:
            if policy.breaker is not None and not policy.breaker.allow():
                raise DeliveryFailed(f"binding {name}: circuit breaker is open")
            answer = await self.sink.deliver(name, route, event, policy.timeout)
            if policy.breaker is not None:
                policy.breaker.record(answer.ok)
            if answer.ok:
                return answer.body
            delay = next(delays, None)
            if delay is None:
                log.warning("[%s] input binding %s: %s", self.runtime.app_id, name, answer.detail)
                raise DeliveryFailed(answer.detail)
            await asyncio.sleep(delay)
