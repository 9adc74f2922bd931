"""EquipmentActor: one virtual actor per machine, holding its window, features, health and alerts.

The domain rules live in domain.py (pure, unit-tested); this class only loads and saves that state
(one actor-state transaction per call), talks to inference and publishes what changed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Concatenate, ParamSpec, TypeVar

from dapr.actor import Actor, ActorId, Remindable
from dapr.actor.runtime.context import ActorRuntimeContext
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from apps.common.actor_interface import EquipmentActorInterface
from apps.common.contracts import (
    MAX_BATCH_READINGS,
    AlertKind,
    EquipmentIngestResult,
    EventKind,
    Reading,
    Seq,
)
from apps.common.names import SILENCE_REMINDER, TOPIC_ALERTS, TOPIC_EQUIPMENT_HEALTH
from apps.common.profiles import PROFILES, EquipmentProfile, get_profile
from apps.equipment.alarms import AlertTransition
from apps.equipment.announce import alerts_to_reannounce, build_alert, remember_alert
from apps.equipment.codec import decode_state, state_text
from apps.equipment.domain import EquipmentState
from apps.equipment.lifecycle import end_alert, retire, start_life
from apps.equipment.phase import calm_check_delay, first_check_delay, is_calm
from apps.equipment.ports import ActorDeps, InferenceUnavailable, ModelChanged

log = logging.getLogger("equipment")

STATE_KEY = "equipment"
# Hot swaps tolerated within one call before the machine is marked stale (each one recomputes).
MAX_SWAPS_PER_CALL = 3
_READINGS = TypeAdapter(list[Reading])


_P = ParamSpec("_P")
_R = TypeVar("_R")


def one_turn(
    method: Callable[Concatenate[EquipmentActor, _P], Awaitable[_R]],
) -> Callable[Concatenate[EquipmentActor, _P], Awaitable[_R]]:
    """Runs the method as the actor's only turn in this app.

    The sidecar gives an actor one turn at a time, but an attempt that times out frees the turn and
    is tried again (daprd's actor resiliency policy; localdapr's too) while the first attempt may
    still be running here: the SDK dispatches it anyway, and two turns would share one state (seen
    under overload as a prediction answered for a reading the other turn had already settled).
    """

    @functools.wraps(method)
    async def run(self: EquipmentActor, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        async with self._turn:
            return await method(self, *args, **kwargs)

    return run


class ResolveRequest(BaseModel):
    kind: AlertKind
    episode: int = Field(ge=1)


class LifeEvent(BaseModel):
    kind: EventKind
    seq: Seq
    note: str = ""


class EquipmentActor(Actor, EquipmentActorInterface, Remindable):
    def __init__(self, ctx: ActorRuntimeContext, actor_id: ActorId, deps: ActorDeps) -> None:
        """Built by the SDK through the `actor_factory` the app registers (`factory`)."""
        super().__init__(ctx, actor_id)
        self._deps = deps
        self._state: EquipmentState | None = None
        self._last_health_at = 0.0
        self._last_status: str | None = None
        self._saved: str | None = None  # the state as last read or written: an unchanged one is not written
        self._turn = asyncio.Lock()  # see `one_turn`
        # The silence check waits past its period for a calm machine (phase.py). Not kept in state: an
        # actor loaded from the store assumes it may, so a machine no longer calm restores the period.
        self._check_stretched = False

    @classmethod
    def factory(cls, deps: ActorDeps) -> Callable[[ActorRuntimeContext, ActorId], EquipmentActor]:
        """The `actor_factory` for `register_actor`: every actor gets the app's dependencies."""

        def build(ctx: ActorRuntimeContext, actor_id: ActorId) -> EquipmentActor:
            return cls(ctx, actor_id, deps)

        return build

    # ------------------------------------------------------------------ lifecycle
    def _profiles(self) -> dict[str, EquipmentProfile]:
        override = self._deps.settings.silence_after_seconds
        if override is None:
            return dict(PROFILES)
        return {k: dataclasses.replace(p, silence_after_seconds=override) for k, p in PROFILES.items()}

    async def _on_activate(self) -> None:
        found, raw = await self._state_manager.try_get_state(STATE_KEY)
        if found:
            self._saved = raw
            self._state = decode_state(self.id.id, json.loads(raw), self._profiles())
            self._check_stretched = self._state.retired_at is None
            if self._state.retired_at is None:
                # A process or an in-memory broker may have died with these events undelivered.
                await self._reannounce(time.time())

    async def _save(self) -> None:
        assert self._state is not None
        # Stored as one JSON string: see actor_interface.py on the SDK serializer's date/duration guessing.
        encoded = state_text(self._state)
        if encoded == self._saved:
            return  # nothing changed (a silence check with nothing to say, a resend): no write
        await self._state_manager.set_state(STATE_KEY, encoded)
        await self._state_manager.save_state()
        self._saved = encoded

    # ------------------------------------------------------------------ methods
    @one_turn
    async def ingest(self, readings_json: str) -> str:
        try:
            readings = _READINGS.validate_json(readings_json)
        except ValidationError as exc:
            raise ValueError(f"Ingest expects a JSON list of Reading: {exc}") from exc
        if not readings:
            raise ValueError("Ingest needs at least one reading")
        now = time.time()
        watched = self._state is not None and self._state.retired_at is None
        if self._state is None:
            self._state = EquipmentState.new(self.id.id, get_profile(readings[0].profile, self._profiles()))
        state = self._state
        result, transitions = state.apply_readings(readings, now, self._deps.settings.max_seq_jump)
        # Even a call of pure duplicates (a client's resend) settles what inference still owes.
        transitions += await self._catch_up(now)
        transitions += state.check_alarms(now, self._deps.started_at)
        await self._announce(transitions, now)
        if not watched and state.retired_at is None:  # a new machine, or a retired one sending again
            await self._register_silence_reminder()
        await self._save()
        await self._restore_check_period()
        return EquipmentIngestResult(
            accepted=result.accepted,
            duplicates=result.duplicates,
            too_late=result.too_late,
            too_far=result.too_far,
            health=state.snapshot(now),
        ).model_dump_json()

    @one_turn
    async def get_health(self) -> str:
        if self._state is None:
            raise ValueError(f"equipment {self.id.id} has sent no readings")
        return self._state.snapshot(time.time()).model_dump_json()

    @one_turn
    async def get_history(self, n: int) -> str:
        if self._state is None:
            return "[]"
        return json.dumps([dataclasses.asdict(p) for p in self._state.get_history(int(n))])

    @one_turn
    async def receive_reminder(
        self, name: str, state: bytes, due_time: timedelta, period: timedelta, ttl: timedelta | None = None
    ) -> None:
        if name != SILENCE_REMINDER or self._state is None or self._state.retired_at is not None:
            return
        now = time.time()
        settings = self._deps.settings
        # Re-published by a check only when no snapshot went out since the previous check (nor for a
        # health interval): a machine sending readings publishes its own every health interval, and
        # with readings slower than that interval each check re-published one for every machine, to
        # alerting and the dashboard, as many messages as the readings' own (bench_pipeline, 1,000 x 1).
        quiet = max(settings.health_publish_seconds, settings.silence_check_seconds)
        revision = self._state.revision
        transitions = await self._catch_up(now)
        transitions += self._state.check_alarms(now, self._deps.started_at)
        await self._announce(transitions, now, interval=quiet)
        # The actor's state is the truth: publish it again, so alerting converges even when an event was
        # lost (a dead process, an in-memory broker) and the fleet view ends at the last state: within
        # two checks at most, since a check finds at least one without a snapshot.
        await self._reannounce(now, health=now - self._last_health_at >= quiet)
        # A check changes the state only with a new revision (a prediction, a transition): otherwise
        # not even encoded to compare with the last one written (most checks, one per machine per 30 s).
        if self._state.revision != revision:
            await self._save()
        # The reminder has just fired, so it is on its regular period again unless stretched anew.
        delay = calm_check_delay(self._state, now, settings.silence_check_seconds, self._deps.started_at)
        self._check_stretched = False
        if delay is not None:
            self._check_stretched = await self._reschedule_check(delay)

    @one_turn
    async def resolve_alert(self, request_json: str) -> str:
        try:
            request = ResolveRequest.model_validate_json(request_json)
        except ValidationError as exc:
            raise ValueError(f"ResolveAlert expects {{kind, episode}}: {exc}") from exc
        if self._state is None:
            return json.dumps({"ended": False})
        now = time.time()
        ended = end_alert(self._state, request.kind, request.episode, now)
        if ended:
            log.warning("%s: %s episode %d ended by an operator", self.id.id, request.kind, request.episode)
            await self._publish_health(now)  # its status may change (e.g. warning -> ok)
            await self._save()
            await self._restore_check_period()
        return json.dumps({"ended": ended})

    @one_turn
    async def retire(self) -> str:
        if self._state is None:
            return json.dumps({"known": False, "retired_at": None})
        now = time.time()
        retire(self._state, now)
        # The reminder is what watches for silence; a reading registers it again.
        await self.unregister_reminder(SILENCE_REMINDER)
        self._check_stretched = False
        await self._save()
        log.warning("%s: retired; no longer watched until it sends a reading", self.id.id)
        return json.dumps({"known": True, "retired_at": now})

    @one_turn
    async def start_life(self, event_json: str) -> str:
        try:
            event = LifeEvent.model_validate_json(event_json)
        except ValidationError as exc:
            raise ValueError(f"StartLife expects {{kind, seq, note}}: {exc}") from exc
        if self._state is None:
            # No reading yet, so no profile to keep a state with; its first reading starts life 0
            # (training counts from the archive's events, which have this one).
            return json.dumps({"known": False, "applied": False, "life": None})
        now = time.time()
        transitions = start_life(self._state, event.kind, event.seq, event.note, now)
        if transitions is None:
            return json.dumps({"known": True, "applied": False, "life": self._state.life})
        log.warning(
            "%s: life %d started by %s after seq %d", self.id.id, self._state.life, event.kind, event.seq
        )
        # Readings after the event already applied (an event recorded late) are predicted again.
        transitions += await self._catch_up(now)
        await self._announce(transitions, now)
        await self._publish_health(now)  # life, age and status changed whatever else did
        await self._save()
        await self._restore_check_period()
        return json.dumps({"known": True, "applied": True, "life": self._state.life})

    # ------------------------------------------------------------------ helpers
    async def _catch_up(self, now: float) -> list[AlertTransition]:
        """Predict every owed window, oldest first, in batches; stop (stale) when inference fails."""
        assert self._state is not None
        state = self._state
        transitions: list[AlertTransition] = []
        name, swaps = state.profile.model_name, 0
        while state.predictions_owed:
            try:
                version, spec = await self._deps.specs.get(state.profile)
                features = state.owed_features(MAX_BATCH_READINGS, spec)
                response = await self._deps.inference.predict(name, features, version)
            except ModelChanged as exc:
                # A hot swap between learning the spec and predicting: recompute with the new one.
                self._deps.specs.forget(name, version)
                swaps += 1
                if swaps <= MAX_SWAPS_PER_CALL:
                    continue
                log.warning("%s: model %s keeps changing, predictions owed: %s", self.id.id, name, exc)
                state.mark_prediction_stale(now)
                break
            except InferenceUnavailable as exc:
                log.warning(
                    "%s: inference unavailable, %d predictions owed: %s",
                    self.id.id,
                    state.predictions_owed,
                    exc,
                )
                state.mark_prediction_stale(now)
                break
            points = [
                (f.window_end_seq, p.value) for f, p in zip(features, response.predictions, strict=True)
            ]
            # An anomaly model's alert thresholds are its card's: learnt with the spec from inference.
            learned = self._deps.specs.alert_thresholds(name, response.model_version)
            transitions += state.record_predictions(points, response.model_version, now, learned)
        return transitions

    async def _announce(
        self, transitions: list[AlertTransition], now: float, interval: float | None = None
    ) -> None:
        """Publish alert events, and a HealthSnapshot on status change or every `interval` seconds
        (default health_publish_seconds)."""
        assert self._state is not None
        publisher = self._deps.publisher
        for transition in transitions:
            alert = build_alert(self._state, transition)
            await publisher.publish(TOPIC_ALERTS, alert)
            remember_alert(self._state, alert)
        status = self._state.status()
        if interval is None:
            interval = self._deps.settings.health_publish_seconds
        if transitions or status != self._last_status or now - self._last_health_at >= interval:
            await self._publish_health(now)

    async def _reannounce(self, now: float, health: bool = True) -> None:
        assert self._state is not None
        for alert in alerts_to_reannounce(self._state):
            await self._deps.publisher.publish(TOPIC_ALERTS, alert)
        if health:
            await self._publish_health(now)

    async def _publish_health(self, now: float) -> None:
        assert self._state is not None
        await self._deps.publisher.publish(TOPIC_EQUIPMENT_HEALTH, self._state.snapshot(now))
        self._last_health_at = now
        self._last_status = self._state.status()

    async def _register_silence_reminder(self, first: float | None = None) -> None:
        """The silence check every period, first in `first` seconds (default: its phase in the period,
        so machines that start together do not all check in the same second)."""
        seconds = self._deps.settings.silence_check_seconds
        if first is None:
            first = first_check_delay(self.id.id, seconds)
        every = timedelta(seconds=seconds)
        await self.register_reminder(SILENCE_REMINDER, b"", timedelta(seconds=first), every)

    async def _restore_check_period(self) -> None:
        """A machine whose check was stretched and that is no longer calm (an alert, a prediction
        owed) is checked every period again from now: what the check re-announces and retries must
        not wait for the stretch to end."""
        assert self._state is not None
        if self._check_stretched and self._state.retired_at is None and not is_calm(self._state):
            self._check_stretched = not await self._reschedule_check(None)

    async def _reschedule_check(self, first: float | None) -> bool:
        """Whether the silence check was registered anew (`_register_silence_reminder`). A failure is
        logged, not raised: the turn's own work is done and saved, and the schedule as it was still
        checks the machine (a restore is tried again at the next turn)."""
        try:
            await self._register_silence_reminder(first)
        except Exception as exc:  # the sidecar's error, whatever its transport's type
            log.warning("%s: silence check not rescheduled: %s", self.id.id, exc)
            return False
        return True
