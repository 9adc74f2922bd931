"""The actor runtime of one sidecar: hosting, placement, turn-based calls, state, timers, reminders.

A call for an actor goes to the sidecar whose instance owns the id on the type's hash ring
(placement.py). That sidecar takes the actor's turn (turns.py) and calls its app with
`PUT /actors/{type}/{id}/method/{method}`; any other sidecar forwards the call to the owner's HTTP
port, so sidecars in other processes work the same as sidecars in this one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import grpc
from multidict import CIMultiDict

from localdapr.actors.config import ActorConfig
from localdapr.actors.placement import Placement
from localdapr.actors.reminders import Registration, ReminderStore, Scheduled
from localdapr.actors.schedule import ScheduleError
from localdapr.actors.turns import ActorEntry
from localdapr.errors import ComponentError, DaprError, malformed
from localdapr.invocation.nameresolution import AppInstance
from localdapr.state.base import StateItem, StateStore, StateStoreError, TransactionOp

if TYPE_CHECKING:
    from localdapr.sidecar import Sidecar

log = logging.getLogger("localdapr")

REENTRANCY_HEADER = "Dapr-Reentrancy-Id"
# Set on a call one sidecar forwards to the owner: the owner runs it, never forwards it again (no
# ping-pong while two sidecars briefly disagree about the ring).
FORWARDED_HEADER = "X-Localdapr-Actor-Forwarded"
# How long a call waits for a host of its actor type to appear before failing (daprd waits ~5 s
# for placement; tests want unknown types to fail fast).
LOOKUP_WAIT = 1.0
RECONCILE_INTERVAL = 0.25
REMINDER_ATTEMPTS = 3
_HOP = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "dapr-api-token"}


def _err(
    code: str, message: str, http: int = 500, rpc: grpc.StatusCode = grpc.StatusCode.INTERNAL
) -> DaprError:
    return DaprError(code, message, http, rpc)


def invoke_error(detail: str) -> DaprError:
    return _err("ERR_ACTOR_INVOKE_METHOD", f"error invoke actor method: {detail}")


def instance_missing() -> DaprError:
    return _err("ERR_ACTOR_INSTANCE_MISSING", "actor instance is missing", 400, grpc.StatusCode.INTERNAL)


def runtime_not_found() -> DaprError:
    return _err(
        "ERR_ACTOR_RUNTIME_NOT_FOUND",
        "the state store is not configured to use the actor runtime. Have you set the - name: "
        'actorStateStore value: "true" in your state store component file?',
    )


@dataclass(slots=True)
class ActorReply:
    """What the caller's sidecar answers: the app's 200 body, or a Dapr error already formatted."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: dict[str, str] | None = None


class ActorSubsystem:
    def __init__(self, sidecar: Sidecar) -> None:
        self.sidecar = sidecar
        self.placement = Placement(sidecar.registry)
        self.config = ActorConfig()
        self.hosted: set[str] = set()
        self._actors: dict[tuple[str, str], ActorEntry] = {}
        self._reminder_tasks: dict[tuple[str, str, str], Scheduled] = {}
        self._members: dict[str, tuple[str, ...]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._last_scan = time.monotonic()

    # ------------------------------------------------------------------ wiring
    def http_routes(self, app: Any, sidecar: Sidecar) -> None:
        from localdapr.actors.http import add_routes

        add_routes(app, self)

    def grpc_overrides(self) -> dict[str, Any]:
        return {}

    @property
    def instance_id(self) -> str:
        return self.sidecar.instance.instance_id

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=512), auto_decompress=False
            )
        return self._session

    def store(self) -> StateStore:
        loaded = self.sidecar.runtime.actor_store
        if loaded is None:
            raise runtime_not_found()
        return loaded.store

    def reminders(self) -> ReminderStore:
        return ReminderStore(self.store())

    # ------------------------------------------------------------------ lifecycle
    async def on_app_ready(self) -> None:
        """Read the app's /dapr/config and register its actor types with placement."""
        channel = self.sidecar.channel
        assert channel is not None
        resp = await channel.request(
            "GET", "/dapr/config", headers={"Dapr-App-Id": self.sidecar.app_id}, timeout=10
        )
        if resp.status == 404:
            return  # daprd: no /dapr/config = the app hosts no actors
        if resp.status != 200:
            log.warning(
                "[%s] GET /dapr/config answered %d; no actors hosted", self.sidecar.app_id, resp.status
            )
            return
        try:
            config = ActorConfig.from_json(resp.json())
        except ValueError as exc:
            raise ComponentError(f"app {self.sidecar.app_id}: bad actor configuration: {exc}") from exc
        if not config.entities:
            self.config = config
            return
        stores = [s for s in self.sidecar.runtime.states.values() if s.is_actor_store]
        if len(stores) != 1:
            raise ComponentError(
                f"app {self.sidecar.app_id} hosts actors ({', '.join(config.entities)}) but "
                f'{len(stores)} state stores have metadata actorStateStore: "true"; exactly one must '
                "(add it to the state store component the actors should use)"
            )
        self.config = config
        self.hosted = set(config.entities)
        self.sidecar.instance.actor_types = sorted(self.hosted)
        self.sidecar.registry.announce(self.sidecar.instance)
        log.info(
            "[%s] hosting actor types %s (idle timeout %.1fs, scan %.1fs)",
            self.sidecar.app_id,
            ", ".join(sorted(self.hosted)),
            config.default.idle_timeout,
            config.scan_interval,
        )
        self._loop_task = asyncio.create_task(self._maintain())

    async def stop(self) -> None:
        tasks: list[asyncio.Task[Any]] = []
        if self._loop_task is not None:
            tasks.append(self._loop_task)
        tasks += [r.task for r in self._reminder_tasks.values()]
        for entry in self._actors.values():
            tasks += [t.task for t in entry.timers.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._reminder_tasks.clear()
        self._actors.clear()
        if self._session is not None:
            await self._session.close()

    def active_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(sorted(self.hosted), 0)
        for entry in self._actors.values():
            if entry.active and not entry.deactivated:
                counts[entry.actor_type] = counts.get(entry.actor_type, 0) + 1
        return counts

    # ------------------------------------------------------------------ placement
    def owns(self, actor_type: str, actor_id: str) -> bool:
        host = self.placement.lookup(actor_type, actor_id)
        return host is not None and host.instance_id == self.instance_id

    def hosts_here(self, actor_type: str, actor_id: str) -> bool:
        """daprd's IsActorHosted, lenient while the ring settles: owned here, or active here."""
        if actor_type not in self.hosted:
            return False
        return (actor_type, actor_id) in self._actors or self.owns(actor_type, actor_id)

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
            self.sidecar.registry.invalidate()
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
        if headers.get(FORWARDED_HEADER) and actor_type in self.hosted:
            return await self.call_method(actor_type, actor_id, method, body, headers)
        policy = self.sidecar.resiliency.for_actor(actor_type)
        delays = policy.retry.delays() if policy.retry else iter(())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 3.0
        while True:
            host = await self._owner(actor_type, actor_id)
            if host.instance_id == self.instance_id:
                return await self.call_method(actor_type, actor_id, method, body, headers)
            try:
                return await self._forward(
                    host, f"method/{method}", "POST", actor_type, actor_id, body, headers
                )
            except (aiohttp.ClientConnectionError, ConnectionError) as exc:
                # The owner went away: once the registry drops it (withdrawn, or its process is gone)
                # the ring hands the id to a survivor, where the actor activates with its stored state.
                self.sidecar.registry.invalidate()
                if loop.time() < deadline:
                    await asyncio.sleep(0.1)
                    continue
                delay = next(delays, None)
                if delay is None:
                    raise invoke_error(f"error from actor host {host.sidecar_base_url}: {exc}") from exc
                await asyncio.sleep(delay)

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
        out = CIMultiDict((k, v) for k, v in CIMultiDict(headers).items() if k.lower() not in _HOP)
        out[FORWARDED_HEADER] = "1"
        if self.sidecar.options.api_token:
            out["dapr-api-token"] = self.sidecar.options.api_token
        url = f"{host.sidecar_base_url}/v1.0/actors/{actor_type}/{actor_id}/{tail}"
        async with self.session().request(
            verb, url, data=body, headers=out, timeout=aiohttp.ClientTimeout(total=None, connect=5)
        ) as resp:
            data = await resp.read()
            return ActorReply(resp.status, data, resp.headers.get("Content-Type", "application/json"))

    def _entry(self, actor_type: str, actor_id: str) -> ActorEntry:
        key = (actor_type, actor_id)
        entry = self._actors.get(key)
        if entry is None:
            entry = self._actors[key] = ActorEntry(actor_type, actor_id)
        return entry

    async def call_method(
        self, actor_type: str, actor_id: str, method: str, body: bytes, headers: CIMultiDict[str]
    ) -> ActorReply:
        """Run one method call on this sidecar's app within the actor's turn."""
        if actor_type not in self.hosted:
            raise invoke_error(
                f"failed to lookup actor: api error: code = FailedPrecondition desc = did not find address "
                f"for actor '{actor_type}/{actor_id}'"
            )
        cfg = self.config.for_type(actor_type)
        out = CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in _HOP)
        out.popall(FORWARDED_HEADER, None)
        out.setdefault("Content-Type", "application/json; charset=utf-8")
        reentrancy_id: str | None = None
        if cfg.reentrancy:
            # daprd starts a reentrancy chain for a call that has none, and the SDK carries it on.
            reentrancy_id = headers.get(REENTRANCY_HEADER) or str(uuid.uuid4())
            out[REENTRANCY_HEADER] = reentrancy_id
        else:
            out.popall(REENTRANCY_HEADER, None)
        policy = self.sidecar.resiliency.for_actor(actor_type)
        if policy.breaker is not None and not policy.breaker.allow():
            raise invoke_error("circuit breaker is open")
        resp = await self._app_call(
            actor_type,
            actor_id,
            f"method/{method}",
            body,
            out,
            reentrancy_id,
            cfg.max_stack_depth,
            policy.timeout,
        )
        if policy.breaker is not None:
            policy.breaker.record(resp.status < 500)
        if resp.status == 200:
            return ActorReply(200, resp.body, resp.headers.get("Content-Type", "application/json"))
        if resp.status == 404:
            return _reply(invoke_error(f"actor method not found: {method}"))
        text = resp.body.decode(errors="replace")
        return _reply(invoke_error(f"error from actor service: ({resp.status}) {text}"))

    async def _app_call(
        self,
        actor_type: str,
        actor_id: str,
        tail: str,
        body: bytes,
        headers: CIMultiDict[str] | dict[str, str],
        reentrancy_id: str | None = None,
        max_depth: int = 32,
        timeout: float | None = None,
    ) -> Any:
        channel = self.sidecar.channel
        if channel is None:
            raise invoke_error("app channel is not initialized")
        while True:
            entry = self._entry(actor_type, actor_id)
            async with entry.turn(reentrancy_id, max_depth):
                if entry.deactivated:
                    continue  # deactivated while we waited: take the turn of the fresh entry
                try:
                    resp = await channel.request(
                        "PUT",
                        f"/actors/{actor_type}/{actor_id}/{tail}",
                        body=body,
                        headers=headers,
                        timeout=timeout or 60.0,
                    )
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    raise invoke_error(f"error from actor service: {exc or type(exc).__name__}") from exc
                entry.active = True  # the SDK activates the actor before it runs the callback
                return resp

    # ------------------------------------------------------------------ deactivation
    async def deactivate(self, entry: ActorEntry) -> None:
        async with entry.turn():
            if entry.deactivated:
                return
            entry.deactivated = True
            if self._actors.get((entry.actor_type, entry.actor_id)) is entry:
                del self._actors[(entry.actor_type, entry.actor_id)]
            for running in entry.timers.values():
                running.stop()  # timers die with the activation, as in daprd
            entry.timers.clear()
            if entry.active and self.sidecar.channel is not None:
                try:
                    resp = await self.sidecar.channel.request(
                        "DELETE", f"/actors/{entry.actor_type}/{entry.actor_id}", timeout=10
                    )
                    # The SDK answers 500 "not activated" for an actor it never activated (a
                    # call that failed before activation): nothing to deactivate, not a problem.
                    if resp.status != 200 and b"is not activated" not in resp.body:
                        log.warning(
                            "[%s] deactivating %s/%s: app answered %d %s",
                            self.sidecar.app_id,
                            entry.actor_type,
                            entry.actor_id,
                            resp.status,
                            resp.body[:200],
                        )
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    log.warning(
                        "[%s] deactivating %s/%s failed: %s",
                        self.sidecar.app_id,
                        entry.actor_type,
                        entry.actor_id,
                        exc,
                    )

    async def _maintain(self) -> None:
        """Background upkeep: follow ring changes (reminders, rebalancing) and deactivate idle actors."""
        while True:
            try:
                await self._reconcile()
                now = time.monotonic()
                if now - self._last_scan >= self.config.scan_interval:
                    self._last_scan = now
                    await self._scan_idle(now)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("[%s] actor upkeep failed", self.sidecar.app_id)
            await asyncio.sleep(min(RECONCILE_INTERVAL, self.config.scan_interval))

    async def _scan_idle(self, now: float) -> None:
        for entry in list(self._actors.values()):
            if entry.busy:
                continue
            idle = self.config.for_type(entry.actor_type).idle_timeout
            if not entry.active:
                self._actors.pop((entry.actor_type, entry.actor_id), None)
            elif now - entry.last_used >= idle:
                await self.deactivate(entry)

    async def _reconcile(self) -> None:
        for actor_type in sorted(self.hosted):
            members = self.placement.members(actor_type)
            if self._members.get(actor_type) == members:
                continue
            self._members[actor_type] = members
            if self.instance_id not in members:
                continue  # not announced yet (or withdrawn): nothing is ours
            log.info("[%s] placement for %s: %d host(s)", self.sidecar.app_id, actor_type, len(members))
            # Rebalancing: actors whose id moved to another instance are deactivated here, so the new
            # owner's activation reads the state back and there is never a stale second copy.
            moved = [
                e
                for e in self._actors.values()
                if e.actor_type == actor_type and not self.owns(actor_type, e.actor_id)
            ]
            for entry in moved:
                await self.deactivate(entry)
            await self._load_reminders(actor_type)

    # ------------------------------------------------------------------ state
    def _state_key(self, actor_type: str, actor_id: str, key: str) -> str:
        return f"{self.sidecar.app_id}||{actor_type}||{actor_id}||{key}"

    async def get_state(self, actor_type: str, actor_id: str, key: str) -> bytes | None:
        store = self.store()
        if not self.hosts_here(actor_type, actor_id):
            raise instance_missing()
        try:
            found = await store.get(self._state_key(actor_type, actor_id, key))
        except StateStoreError as exc:
            raise _err("ERR_ACTOR_STATE_GET", f"error getting actor state: {exc}") from exc
        return found.data if found is not None else None

    async def transact_state(self, actor_type: str, actor_id: str, operations: Any) -> None:
        store = self.store()
        if not isinstance(operations, list):
            raise malformed("actor state transaction must be a JSON array of operations")
        if not self.hosts_here(actor_type, actor_id):
            raise instance_missing()
        ttl_allowed = bool(self.sidecar.configuration.features.get("ActorStateTTL"))
        ops: list[TransactionOp] = []
        for i, raw in enumerate(operations):
            if not isinstance(raw, dict):
                raise malformed(f"operation {i} is not an object")
            kind = raw.get("operation")
            req = raw.get("request") or {}
            key = req.get("key")
            if kind not in ("upsert", "delete") or not key:
                raise malformed(f"operation {i}: operation must be upsert or delete, with request.key")
            metadata = {str(k): str(v) for k, v in (req.get("metadata") or {}).items()}
            if "ttlInSeconds" in metadata and not ttl_allowed:
                raise _err(
                    "ERR_ACTOR_STATE_TRANSACTION_SAVE",
                    "error saving actor transaction state: ttlInSeconds is not supported without the "
                    '"ActorStateTTL" feature enabled',
                )
            value = json.dumps(req.get("value"), separators=(",", ":")).encode() if kind == "upsert" else b""
            item = StateItem(
                key=self._state_key(actor_type, actor_id, str(key)), value=value, metadata=metadata
            )
            ops.append(TransactionOp(operation=kind, item=item))
        try:
            await store.transact(ops)
        except StateStoreError as exc:
            raise _err(
                "ERR_ACTOR_STATE_TRANSACTION_SAVE", f"error saving actor transaction state: {exc}"
            ) from exc

    # ------------------------------------------------------------------ timers
    async def register_timer(self, actor_type: str, actor_id: str, name: str, body: Any) -> None:
        if not isinstance(body, dict):
            raise malformed("timer request must be a JSON object")
        try:
            reg = Registration.from_request(actor_type, actor_id, name, body)
        except ScheduleError as exc:
            raise _err("ERR_ACTOR_TIMER_CREATE", f"error creating actor timer: {exc}") from exc
        if not reg.callback:
            raise _err("ERR_ACTOR_TIMER_CREATE", "error creating actor timer: callback is required")
        entry = self._entry(actor_type, actor_id)
        old = entry.timers.pop(name, None)
        if old is not None:
            old.stop()
        entry.touch()
        entry.timers[name] = Scheduled(asyncio.create_task(self._run_timer(entry, reg)), reg)

    async def unregister_timer(self, actor_type: str, actor_id: str, name: str) -> None:
        entry = self._actors.get((actor_type, actor_id))
        if entry is not None:
            running = entry.timers.pop(name, None)
            if running is not None:
                running.stop()

    async def _run_timer(self, entry: ActorEntry, reg: Registration) -> None:
        assert reg.schedule is not None
        body = json.dumps(reg.timer_body()).encode()
        headers = {"Content-Type": "application/json"}
        try:
            while (when := reg.schedule.next_fire()) is not None and not reg.cancelled:
                await asyncio.sleep(max(0.0, when - time.time()))
                reg.schedule.fired += 1
                if entry.deactivated or reg.cancelled:
                    return
                reg.firing = True
                try:
                    resp = await self._app_call(
                        entry.actor_type, entry.actor_id, f"method/timer/{reg.name}", body, headers
                    )
                    if resp.status != 200:
                        self._callback_failed("timer", reg, f"app answered {resp.status} {resp.body[:200]!r}")
                except DaprError as exc:
                    self._callback_failed("timer", reg, exc.message)
                finally:
                    reg.firing = False
        finally:
            running = entry.timers.get(reg.name)
            if running is not None and running.task is asyncio.current_task():
                del entry.timers[reg.name]

    def _callback_failed(self, kind: str, reg: Registration, problem: str) -> None:
        log.warning(
            "[%s] %s %s on %s/%s: %s",
            self.sidecar.app_id,
            kind,
            reg.name,
            reg.actor_type,
            reg.actor_id,
            problem,
        )

    # ------------------------------------------------------------------ reminders
    async def register_reminder(self, actor_type: str, actor_id: str, name: str, body: Any) -> None:
        if not isinstance(body, dict):
            raise malformed("reminder request must be a JSON object")
        try:
            reg = Registration.from_request(actor_type, actor_id, name, body)
        except ScheduleError as exc:
            raise _err("ERR_ACTOR_REMINDER_CREATE", f"error creating actor reminder: {exc}") from exc
        try:
            await self.reminders().save(reg)
        except StateStoreError as exc:
            raise _err("ERR_ACTOR_REMINDER_CREATE", f"error creating actor reminder: {exc}") from exc
        self._start_reminder(reg)

    async def unregister_reminder(self, actor_type: str, actor_id: str, name: str) -> None:
        running = self._reminder_tasks.pop((actor_type, actor_id, name), None)
        if running is not None:
            running.stop()
        try:
            await self.reminders().delete(actor_type, actor_id, name)
        except StateStoreError as exc:
            raise _err("ERR_ACTOR_REMINDER_DELETE", f"error deleting actor reminder: {exc}") from exc

    async def get_reminder(self, actor_type: str, actor_id: str, name: str) -> dict[str, Any] | None:
        try:
            reg = await self.reminders().get(actor_type, actor_id, name)
        except StateStoreError as exc:
            raise _err("ERR_ACTOR_REMINDER_GET", f"error getting actor reminder: {exc}") from exc
        return reg.public() if reg is not None else None

    def _start_reminder(self, reg: Registration) -> None:
        key = (reg.actor_type, reg.actor_id, reg.name)
        old = self._reminder_tasks.pop(key, None)
        if old is not None:
            old.stop()
        self._reminder_tasks[key] = Scheduled(asyncio.create_task(self._run_reminder(reg)), reg)

    async def _load_reminders(self, actor_type: str) -> None:
        """Track the persisted reminders of `actor_type` whose ids this instance owns; drop the rest."""
        try:
            regs = await self.reminders().load_type(actor_type)
        except NotImplementedError:
            log.warning(
                "[%s] the actor state store cannot list keys; reminders are not reloaded", self.sidecar.app_id
            )
            return
        except StateStoreError as exc:
            log.warning("[%s] loading reminders of %s failed: %s", self.sidecar.app_id, actor_type, exc)
            return
        mine = {(r.actor_type, r.actor_id, r.name): r for r in regs if self.owns(r.actor_type, r.actor_id)}
        for key, running in list(self._reminder_tasks.items()):
            if key[0] == actor_type and key not in mine:
                running.stop()
                del self._reminder_tasks[key]
        for key, reg in mine.items():
            if key not in self._reminder_tasks:
                self._start_reminder(reg)

    async def _run_reminder(self, reg: Registration) -> None:
        assert reg.schedule is not None
        key = (reg.actor_type, reg.actor_id, reg.name)
        store = self.reminders()
        body = json.dumps(reg.reminder_body()).encode()
        headers = {"Content-Type": "application/json"}
        try:
            reg.schedule.skip_missed(time.time())
            while (when := reg.schedule.next_fire()) is not None and not reg.cancelled:
                await asyncio.sleep(max(0.0, when - time.time()))
                reg.firing = True
                try:
                    cancel = await self._fire_reminder(reg, body, headers)
                finally:
                    reg.firing = False
                reg.schedule.fired += 1
                if cancel or reg.cancelled:
                    break
                if reg.schedule.next_fire() is not None:
                    await store.save(reg)  # the fire count survives a restart (repetitions, no replays)
            running = self._reminder_tasks.get(key)
            if running is not None and running.task is asyncio.current_task():
                # Over (one-shot, repetitions, ttl, or cancelled by the app): forget it for good.
                del self._reminder_tasks[key]
                await store.delete(reg.actor_type, reg.actor_id, reg.name)
        except StateStoreError as exc:
            self._callback_failed("reminder", reg, f"state store error: {exc}")

    async def _fire_reminder(self, reg: Registration, body: bytes, headers: dict[str, str]) -> bool:
        """Deliver one fire (retrying a few times); True when the app asked to cancel the reminder."""
        for attempt in range(REMINDER_ATTEMPTS):
            try:
                resp = await self._app_call(
                    reg.actor_type, reg.actor_id, f"method/remind/{reg.name}", body, headers
                )
            except DaprError as exc:
                problem = exc.message
            else:
                if resp.headers.get("X-Daprremindercancel", "").lower() == "true":
                    return True
                if resp.status == 200:
                    return False
                problem = f"app answered {resp.status} {resp.body[:200]!r}"
            self._callback_failed("reminder", reg, f"attempt {attempt + 1}: {problem}")
            if reg.cancelled:
                return False
            await asyncio.sleep(0.2 * (attempt + 1))
        return False

    # ------------------------------------------------------------------ routing for timers/reminders
    async def owner_or_none(
        self, actor_type: str, actor_id: str, headers: CIMultiDict[str]
    ) -> AppInstance | None:
        """The remote owner to forward a timer/reminder request to, or None to handle it here."""
        if headers.get(FORWARDED_HEADER) and actor_type in self.hosted:
            return None
        host = await self._owner(actor_type, actor_id)
        return None if host.instance_id == self.instance_id else host

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
            self.sidecar.registry.invalidate()
            raise invoke_error(f"error from actor host {host.sidecar_base_url}: {exc}") from exc


def _reply(err: DaprError) -> ActorReply:
    return ActorReply(err.http_status, json.dumps(err.to_json()).encode())
