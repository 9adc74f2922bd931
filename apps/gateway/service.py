"""The gateway without HTTP: who is calling (keys, scopes), how often (token buckets), and the calls to
the services behind it (forwarding with deadlines, and the machine view that combines several).

Every refusal is a `GatewayError` carrying its status, a message that says what to do, and the headers
it needs (`Retry-After`, `WWW-Authenticate`); app.py turns it into the JSON answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from apps.common.contracts import HealthSnapshot, ModelCard
from apps.common.names import ALERTING_APP_ID, TRAINING_APP_ID
from apps.common.profiles import EquipmentProfile
from apps.common.registry import RegisteredModel
from apps.gateway.context import RequestContext
from apps.gateway.keys import (
    SCOPE_MEANING,
    Conflict,
    KeyNotFound,
    KeyRecord,
    KeyService,
    KeyStoreUnavailable,
    Principal,
    Scope,
)
from apps.gateway.ports import Answer, Upstream, UpstreamUnavailable
from apps.gateway.quota import QUOTA_NAME, NewIdLedger
from apps.gateway.ratelimit import TokenBuckets, retry_after_header
from apps.gateway.settings import GatewaySettings

log = logging.getLogger("gateway")
T = TypeVar("T")
_MODELS = TypeAdapter(list[RegisteredModel])
_ANY_LIST = TypeAdapter(list[dict[str, Any]])


class _FleetIds(BaseModel):
    """The part of alerting's fleet the new-id quota reads."""

    class Machine(BaseModel):
        equipment_id: str

    machines: list[Machine]


_FLEET = TypeAdapter(_FleetIds)
KEY_HINT = "send it as 'X-API-Key: vgl_...' or 'Authorization: Bearer vgl_...' (vigil keys create)"


class GatewayError(Exception):
    def __init__(
        self,
        status: int,
        detail: str,
        headers: Mapping[str, str] | None = None,
        required_scope: Scope | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})
        self.required_scope = required_scope
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"detail": self.detail}
        if self.required_scope is not None:
            body["required_scope"] = self.required_scope
        return body | self.extra


class HistoryPoint(BaseModel):
    seq: int
    at: float = Field(description="Epoch seconds the prediction was recorded.")
    predicted_rul: float
    model_version: int


class MachineView(BaseModel):
    """One machine as its actor, alerting and the model registry see it, in one answer."""

    model_config = ConfigDict(protected_namespaces=())

    equipment_id: str
    health: HealthSnapshot
    history: list[HistoryPoint] | None = Field(description="The last predictions, oldest first.")
    alerts: list[dict[str, Any]] | None = Field(description="The machine's alerts (alerting's records).")
    model: ModelCard | None = Field(description="The card of the model version behind the last prediction.")
    unavailable: list[str] = Field(
        default_factory=list, description="Parts left out (null above) because their service did not answer."
    )


class Gateway:
    def __init__(
        self,
        upstream: Upstream,
        keys: KeyService,
        buckets: TokenBuckets,
        settings: GatewaySettings,
        profiles: Mapping[str, EquipmentProfile],
        new_ids: NewIdLedger | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.upstream = upstream
        self.keys = keys
        self.buckets = buckets
        self.settings = settings
        self.profiles = profiles
        self.new_ids = new_ids or NewIdLedger(settings.new_ids, clock)
        self.clock = clock
        self._fleet_read_at: float | None = None

    # ------------------------------------------------------------------ who, and how often
    async def authorize(
        self, presented: str | None, client: str, scope: Scope | None, route: str
    ) -> Principal:
        """The caller's principal if its key is valid, has `scope` (None: any valid key) and its bucket
        for `route` has a token; else GatewayError 401, 403 or 429."""
        if not presented:
            raise self._unauthorized(f"an API key is required: {KEY_HINT}", scope)
        principal = self.keys.cached(presented)
        if principal is None:
            # Guessing costs the guesser: failures per client address are limited before any scrypt runs.
            failures = ("auth-failures", client)
            wait = self.buckets.wait(failures, self.settings.auth_failures)
            if wait is not None:
                raise self._too_many(wait, "too many failed authentications from this address")
            principal = await self._key_call(self.keys.authenticate(presented))
            if principal is None:
                self.buckets.take(failures, self.settings.auth_failures)
                raise self._unauthorized("the API key is not valid (unknown, malformed or revoked)", scope)
        if scope is not None and scope not in principal.scopes:
            raise GatewayError(
                403,
                f"the API key '{principal.name}' lacks the '{scope}' scope ({SCOPE_MEANING[scope]}); it has: "
                f"{', '.join(sorted(principal.scopes)) or 'none'}",
                required_scope=scope,
            )
        rate = self.settings.rates[scope] if scope is not None else self.settings.rates["read"]
        wait = self.buckets.take((principal.key_id, route), rate)
        if wait is not None:
            raise self._too_many(
                wait, f"rate limit of this key on {route}: {rate.per_second:g}/s, burst {rate.burst}"
            )
        return principal

    async def admit_new_ids(self, principal: Principal, ids: set[str], ctx: RequestContext) -> None:
        """Count the equipment ids new to the platform against the key's quota (see quota.py); 429 with
        Retry-After and the quota's name when the call would exceed it."""
        refused = self.new_ids.admit(principal.key_id, ids)
        if refused is not None and await self._learn_fleet(ctx):
            refused = self.new_ids.admit(principal.key_id, ids)
        if refused is None:
            return
        quota = self.settings.new_ids
        retry = retry_after_header(refused.retry_after)
        log.warning("key %s: new-id quota exceeded (%d new ids)", principal.name, refused.new)
        raise GatewayError(
            429,
            f"quota '{QUOTA_NAME}' of this key exceeded: at most {quota.limit} machines new to the platform "
            f"every {quota.window_seconds:g} s; this call names {refused.new} new, {refused.used} already "
            f"introduced in this window; retry after {retry} s",
            {"Retry-After": retry},
            extra={
                "quota": QUOTA_NAME,
                "limit": quota.limit,
                "window_seconds": quota.window_seconds,
                "new_ids": refused.new,
                "used": refused.used,
            },
        )

    async def _learn_fleet(self, ctx: RequestContext) -> bool:
        """Learn the machines alerting knows (at most every known_ids_refresh_seconds); False if not read."""
        now = self.clock()
        last = self._fleet_read_at
        if last is not None and now - last < self.settings.known_ids_refresh_seconds:
            return False
        self._fleet_read_at = now
        try:
            answer = await self.forward(ALERTING_APP_ID, "v1/fleet", ctx)
            if answer.status != 200:
                raise ValueError(f"{ALERTING_APP_ID} answered {answer.status}")
            machines = _FLEET.validate_json(answer.body).machines
        except (GatewayError, ValidationError, ValueError) as exc:
            log.warning("new-id quota: could not read the fleet: %s", exc)
            return False
        self.new_ids.learn(m.equipment_id for m in machines)
        return True

    # ------------------------------------------------------------------ keys
    async def list_keys(self) -> list[KeyRecord]:
        return await self._key_call(self.keys.list())

    async def create_key(self, name: str, scopes: Iterable[Scope]) -> tuple[str, KeyRecord]:
        return await self._key_call(self.keys.create(name, scopes))

    async def revoke_key(self, key_id: str) -> KeyRecord:
        return await self._key_call(self.keys.revoke(key_id))

    async def _key_call(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except KeyNotFound as exc:
            raise GatewayError(404, str(exc)) from None
        except (KeyStoreUnavailable, Conflict) as exc:
            log.warning("key store: %s", exc)
            retry = str(self.settings.retry_after_seconds)
            raise GatewayError(
                503, "the key store is unavailable, try again", {"Retry-After": retry}
            ) from None

    @staticmethod
    def _unauthorized(detail: str, scope: Scope | None) -> GatewayError:
        return GatewayError(401, detail, {"WWW-Authenticate": 'Bearer realm="vigil"'}, scope)

    @staticmethod
    def _too_many(wait: float, why: str) -> GatewayError:
        retry = retry_after_header(wait)
        return GatewayError(429, f"{why}; retry after {retry} s", {"Retry-After": retry})

    # ------------------------------------------------------------------ calls
    async def _within(self, call: Awaitable[T], timeout: float, what: str) -> T:
        try:
            return await asyncio.wait_for(call, timeout)
        except TimeoutError:
            raise GatewayError(504, f"{what} did not answer within {timeout:g} s") from None
        except UpstreamUnavailable as exc:
            log.warning("%s unavailable: %s", what, exc)
            retry = str(self.settings.retry_after_seconds)
            raise GatewayError(503, f"{what} is unavailable, try again", {"Retry-After": retry}) from None

    async def forward(
        self,
        app_id: str,
        path: str,
        ctx: RequestContext,
        *,
        verb: str = "GET",
        query: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        timeout: float | None = None,
    ) -> Answer:
        """The service's answer (its 4xx and 503 included: they are the client's to read); 502 when the
        service failed, 503 when it is away, 504 past the deadline."""
        headers = (("traceparent", ctx.traceparent), ("x-request-id", ctx.request_id))
        call = self.upstream.call(app_id, path, verb=verb, query=query, body=body, headers=headers)
        answer = await self._within(call, timeout or self.settings.call_timeout_seconds, app_id)
        if answer.status >= 500 and answer.status != 503:
            log.warning("%s %s %s failed with %d: %.500r", app_id, verb, path, answer.status, answer.body)
            raise GatewayError(502, f"{app_id} failed (HTTP {answer.status})")
        return answer

    async def machine(self, equipment_id: str, ctx: RequestContext) -> MachineView:
        """The machine's health (required: 404 for a machine never seen, 503 when its actor does not
        answer), its prediction history, its alerts and its model's card (each left out, and named in
        `unavailable`, when its service does not answer)."""
        timeout = self.settings.call_timeout_seconds
        health = await self._within(self.upstream.health(equipment_id), timeout, "equipment")
        if health is None:
            raise GatewayError(404, f"machine {equipment_id!r} has sent no readings")
        history, alerts, model = await asyncio.gather(
            self._optional(self._history(equipment_id), "history"),
            self._optional(self._alerts(equipment_id, ctx), "alerts"),
            self._optional(self._card(health, ctx), "model"),
        )
        parts = {"history": history, "alerts": alerts, "model": model}
        return MachineView(
            equipment_id=equipment_id,
            health=health,
            history=history[0],
            alerts=alerts[0],
            model=model[0],
            unavailable=[f"{what}: {problem}" for what, (_, problem) in parts.items() if problem],
        )

    async def _optional(self, call: Awaitable[T], what: str) -> tuple[T | None, str | None]:
        try:
            return await call, None
        except GatewayError as exc:
            return None, exc.detail
        except (ValidationError, ValueError) as exc:
            log.warning("machine view: %s answered something unreadable: %s", what, exc)
            return None, "answer not understood"

    async def _history(self, equipment_id: str) -> list[HistoryPoint]:
        points = await self._within(
            self.upstream.history(equipment_id, self.settings.history_points),
            self.settings.call_timeout_seconds,
            "equipment",
        )
        return [HistoryPoint.model_validate(p) for p in points]

    async def _alerts(self, equipment_id: str, ctx: RequestContext) -> list[dict[str, Any]]:
        query = (("equipment_id", equipment_id), ("limit", str(self.settings.machine_alerts)))
        answer = await self.forward(ALERTING_APP_ID, "v1/alerts", ctx, query=query)
        if answer.status != 200:
            raise GatewayError(503, f"{ALERTING_APP_ID} answered {answer.status}")
        return _ANY_LIST.validate_json(answer.body)

    async def _card(self, health: HealthSnapshot, ctx: RequestContext) -> ModelCard | None:
        profile = self.profiles.get(health.profile)
        if profile is None or health.model_version is None:
            return None  # no prediction yet: no model behind it
        answer = await self.forward(TRAINING_APP_ID, "v1/models", ctx)
        if answer.status != 200:
            raise GatewayError(503, f"{TRAINING_APP_ID} answered {answer.status}")
        for model in _MODELS.validate_json(answer.body):
            if model.name == profile.model_name:
                return next((c for c in model.versions if c.version == health.model_version), None)
        return None
