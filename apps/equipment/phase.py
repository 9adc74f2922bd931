"""When a machine's silence check fires: spread over the period by the machine's id, and stretched
while the machine is calm.

A fleet that starts together (a plant coming online, `vigil simulate --machines 10000`, a restart)
registers its reminders within seconds; with the same due time for all, every machine's check would
fire in the same second of each period (10,000 actor turns at once every 30 s). A first due time
taken from the id spreads the fires evenly over the period whatever the arrival pattern, and the same
id always gets the same phase (a retired machine that sends again, tests).

A check is an actor turn (the sidecar calls the app) even when it has nothing to do, and 10,000
machines checked every 30 s are ~333 turns a second. A calm machine, one the check could only find
silent, cannot turn silent before `silence_after` has passed since it was last heard from: its next
check waits until then (plus its phase, so a detection comes at most one period late, as before). A
machine with anything else to watch keeps the regular period.
"""

from __future__ import annotations

import hashlib

from apps.equipment.domain import EquipmentState

_SCALE = float(2**64)
# A stretch costs a reminder registration (a sidecar call and a store write): it is made only when it
# saves at least two regular checks.
MIN_STRETCH_PERIODS = 3.0


def first_check_delay(equipment_id: str, period: float) -> float:
    """Seconds until the first check: in (0, period], uniform over ids, the same for the same id."""
    digest = hashlib.blake2b(equipment_id.encode(), digest_size=8).digest()
    return period * (int.from_bytes(digest, "big") + 1) / _SCALE


def is_calm(state: EquipmentState) -> bool:
    """Nothing for a check to do but notice silence: watched, running, predicted and caught up, no
    episode of any alert open (a cleared one is re-announced at the stretched checks only)."""
    assert state.stale is not None
    # "ok" already means not down, not silent, no rul_low episode open, not stale and predicted.
    return (
        state.retired_at is None
        and state.status() == "ok"
        and state.predictions_owed == 0
        and not state.stale.active
    )


def calm_check_delay(
    state: EquipmentState, now: float, period: float, listening_since: float | None = None
) -> float | None:
    """Seconds until a calm machine's next check: when it would turn silent (measured from when it
    was last heard, as `check_alarms` measures it), plus its phase. None: keep the regular period
    (not calm, never heard from, or too soon for a stretch to pay)."""
    if not is_calm(state) or state.last_reading_at is None:
        return None
    heard = state.last_reading_at if listening_since is None else max(state.last_reading_at, listening_since)
    silent_at = heard + state.profile.silence_after_seconds
    delay = silent_at - now + first_check_delay(state.equipment_id, period)
    return delay if delay >= MIN_STRETCH_PERIODS * period else None
