"""Delivering input binding events to the app, as daprd's binding processor does.

Once the app channel is ready, each input binding is read if the app wants it: a binding whose
`direction` names "input" is read at once; otherwise the sidecar asks the app and reads the binding
only if the app says it handles it (logged otherwise, as daprd logs it).

An event the app does not take (or an app that cannot be reached) is retried under the
`components.<name>.inbound` resiliency policy and then reported back to the binding as a failure;
what the binding does with it is its own choice (bindings.cron drops the fire, as in daprd).

The app is reached through an AppSink, one per app protocol:
- HttpAppSink asks with `OPTIONS /<route>` (2xx or 405, a route that exists for POST only, means
  yes) and POSTs each event to `/<route>` with the event data as body, `Content-Type:
  application/json` and the event metadata as headers; an answer outside 2xx is a failure.
- GrpcAppSink asks AppCallback.ListInputBindings (once: daprd keeps the list) and calls
  OnBindingEvent(name, data, metadata); a gRPC error is a failure. The app's BindingEventResponse is
  honoured as daprd honours it: its `data` goes to each output binding named in `to` (operation
  `create`, in order or all at once as `concurrency` says) and back to the input binding.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import grpc
from dapr.proto import appcallback_v1
from google.protobuf import empty_pb2

from localdapr.appchannel import AppChannel, GrpcAppChannel
from localdapr.appchannel.grpc import rpc_error_text
from localdapr.bindings.base import InvokeRequest, ReadEvent
from localdapr.bindings.gocompat import decode_json, marshal_json
from localdapr.bindings.runtime import LoadedBinding
from localdapr.errors import DaprError
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


@dataclass
class GrpcAppSink:
    channel: GrpcAppChannel
    runtime: DaprRuntime
    listed: list[str] | None = None  # the app's ListInputBindings answer, asked once

    async def wants(self, binding: str, route: str) -> bool:
        if self.listed is None:
            try:
                answer = await self.channel.callback.ListInputBindings(
                    empty_pb2.Empty(), metadata=self.channel.metadata(), timeout=10
                )
            except grpc.aio.AioRpcError as exc:
                # daprd reads a failed (or unimplemented) ListInputBindings as "no bindings".
                log.info("[%s] ListInputBindings failed: %s", self.runtime.app_id, rpc_error_text(exc))
                self.listed = []
            else:
                self.listed = list(answer.bindings)
        return binding in self.listed

    async def deliver(self, binding: str, route: str, event: ReadEvent, timeout: float | None) -> AppAnswer:
        request = appcallback_v1.BindingEventRequest(name=binding, data=event.data, metadata=event.metadata)
        try:
            answer = await self.channel.callback.OnBindingEvent(
                request, metadata=self.channel.metadata(), timeout=timeout or 60
            )
        except grpc.aio.AioRpcError as exc:
            return AppAnswer(False, detail=f"error invoking app: {rpc_error_text(exc)}")
        if answer.to:
            await self._send_to_outputs(binding, answer)
        return AppAnswer(True, bytes(answer.data))

    async def _send_to_outputs(self, binding: str, answer: Any) -> None:
        """daprd's onAppResponse: the data, read as JSON (null when it is not JSON) and written back as
        Go's encoding/json writes it, is sent to each `to` binding; failures are logged, not returned.
        The response's `states` are ignored, as daprd ignores them from gRPC apps."""
        try:
            value = decode_json(answer.data) if answer.data else None
        except ValueError:
            value = None
        data = marshal_json(value)
        names = list(answer.to)
        if answer.concurrency == appcallback_v1.BindingEventResponse.PARALLEL:
            results = await asyncio.gather(
                *(self.runtime.invoke_binding(name, InvokeRequest("create", data)) for name in names),
                return_exceptions=True,
            )
            failures = [(n, r) for n, r in zip(names, results, strict=True) if isinstance(r, Exception)]
        else:
            failures = []
            for name in names:
                try:
                    await self.runtime.invoke_binding(name, InvokeRequest("create", data))
                except DaprError as exc:
                    failures.append((name, exc))
                    break  # daprd stops at the first failure of a sequential batch
        for name, exc in failures:
            log.error(
                "[%s] error executing app response of input binding %s: output binding %s: %s",
                self.runtime.app_id,
                binding,
                name,
                exc,
            )


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
                    log.info("[%s] app has not subscribed to binding %s", self.runtime.app_id, name)
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
