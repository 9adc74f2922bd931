"""Routing and forwarding: which sidecar runs a call for an actor id, and getting the call there.

A call for an actor goes to the sidecar whose instance owns the id on the type's hash ring
(placement.py). That sidecar runs it within the actor's turn (activation.py); any other sidecar
forwards it to the owner's HTTP port, so sidecars in other processes work the same as sidecars in
this one, or, when the owner is a sidecar of this process, hands it over in memory (inprocess.py).
"""

from __future__ import annotations

import asyncio

import aiohttp
from multidict import CIMultiDict

from localdapr import inprocess
from localdapr.actors.activation import FORWARDED_HEADER, HOP_HEADERS, Activations
from localdapr.actors.errors import ActorReply, instance_missing, invoke_error
from localdapr.actors.placement import Placement
from localdapr.context import SidecarContext
from localdapr.invocation.nameresolution import AppInstance

# How long a call waits for a host of its actor type to appear before failing (daprd waits ~5 s
# for placement; tests want unknown types to fail fast).
LOOKUP_WAIT = 1.0


def _forwarded_headers(headers: CIMultiDict[str] | dict[str, str]) -> CIMultiDict[str]:
    """The call's headers as the owner gets them: this hop's dropped, marked forwarded."""
    out = CIMultiDict((k, v) for k, v in CIMultiDict(headers).items() if k.lower() not in HOP_HEADERS)
    out[FORWARDED_HEADER] = "1"
    return out


class Router:
    def __init__(self, ctx: SidecarContext, placement: Placement, activations: Activations) -> None:
        self.ctx = ctx
        self.placement = placement
        self.activations = activations
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=512), auto_decompress=False
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    # ------------------------------------------------------------------ placement
    def owns(self, actor_type: str, actor_id: str) -> bool:
        host = self.placement.lookup(actor_type, actor_id)
        return host is not None and host.instance_id == self.ctx.instance.instance_id

    def hosts_here(self, actor_type: str, actor_id: str) -> bool:
        """daprd's IsActorHosted, lenient while the ring settles: owned here, or active here."""
        if actor_type not in self.activations.hosted:
            return False
        return self.activations.find(actor_type, actor_id) is not None or self.owns(actor_type, actor_id)

    async def _owner(self, actor_type: str, actor_id: str) -> AppInstance:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOOKUP_WAIT
        while True:
            host = self.placement.lookup(actor_type, actor_id)
            if host is not None:
                return host
            if loop.time() >= deadline:
                raise invoke_error(
                    "failed to lookup actor: api error: code = FailedPrecondition desc = did not find "
                    f"address for actor '{actor_type}/{actor_id}'"
                )
            self.ctx.registry.invalidate()
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------------ invocation
    async def invoke(
        self,
        actor_type: str,
        actor_id: str,
        method: str,
        body: bytes,
        headers: CIMultiDict[str],
    ) -> ActorReply:
        """Call an actor method from this sidecar's API: locally if owned here, else via the owner."""
        if not actor_type or not actor_id:
            raise instance_missing()
        if headers.get(FORWARDED_HEADER) and actor_type in self.activations.hosted:
            return await self.activations.call_method(actor_type, actor_id, method, body, headers)
        policy = self.ctx.resiliency.for_actor(actor_type)
        delays = policy.retry.delays() if policy.retry else iter(())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3.0
        while True:
            host = await self._owner(actor_type, actor_id)
            if host.instance_id == self.ctx.instance.instance_id:
                return await self.activations.call_method(actor_type, actor_id, method, body, headers)
            in_process = inprocess.find(host.instance_id)
            try:
                if in_process is not None and in_process.trusts(self.ctx.trust):
                    # The owner is a sidecar of this process: handed over in memory (inprocess.py).
                    forwarded = _forwarded_headers(headers)
                    return await in_process.call_actor(actor_type, actor_id, method, body, forwarded)
                return await self._forward(
                    host, f"method/{method}", "POST", actor_type, actor_id, body, headers
                )
            except (aiohttp.ClientConnectionError, ConnectionError) as exc:
                # The owner went away: once the registry drops it (withdrawn, or its process is gone)
                # the ring hands the id to a survivor, where the actor activates with its stored state.
                self.ctx.registry.invalidate()
                if loop.time() < deadline:
                    await asyncio.sleep(0.1)
                    continue
                delay = next(delays, None)
                if delay is None:
                    raise invoke_error(f"error from actor host {host.sidecar_base_url}: {exc}") from exc
                await asyncio.sleep(delay)

    # ------------------------------------------------------------------ timers and reminders
    async def owner_or_none(
        self, actor_type: str, actor_id: str, headers: CIMultiDict[str]
    ) -> AppInstance | None:
        """The remote owner to forward a timer/reminder request to, or None to handle it here."""
        if headers.get(FORWARDED_HEADER) and actor_type in self.activations.hosted:
            return None
        host = await self._owner(actor_type, actor_id)
        return None if host.instance_id == self.ctx.instance.instance_id else host

    async def forward(
        self,
        host: AppInstance,
        tail: str,
        verb: str,
        actor_type: str,
        actor_id: str,
        body: bytes,
        headers: CIMultiDict[str],
    ) -> ActorReply:
        try:
            return await self._forward(host, tail, verb, actor_type, actor_id, body, headers)
        except (aiohttp.ClientConnectionError, ConnectionError) as exc:
            self.ctx.registry.invalidate()
            raise invoke_error(f"error from actor host {host.sidecar_base_url}: {exc}") from exc

    async def _forward(
        self,
        host: AppInstance,
        tail: str,
        verb: str,
        actor_type: str,
        actor_id: str,
        body: bytes,
        headers: CIMultiDict[str] | dict[str, str],
    ) -> ActorReply:
        out = _forwarded_headers(headers)
        out.update(self.ctx.trust.headers)  # the host's sidecar may have an API token of its own
        url = f"{host.sidecar_base_url}/v1.0/actors/{actor_type}/{actor_id}/{tail}"
        async with self.session().request(
            verb, url, data=body, headers=out, timeout=aiohttp.ClientTimeout(total=None, connect=5)
        ) as resp:
            data = await resp.read()
            return ActorReply(resp.status, data, resp.headers.get("Content-Type", "application/json"))
