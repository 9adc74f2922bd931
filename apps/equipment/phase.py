"""Where in its period a machine's silence check fires: spread over the period by the machine's id.

A fleet that starts together (a plant coming online, `vigil simulate --machines 10000`, a restart)
registers its reminders within seconds; with the same due time for all, every machine's check would
fire in the same second of each period (10,000 actor turns at once every 30 s). A first due time
taken from the id spreads the fires evenly over the period whatever the arrival pattern, and the same
id always gets the same phase (a retired machine that sends again, tests).
"""

from __future__ import annotations

import hashlib

_SCALE = float(2**64)


def first_check_delay(equipment_id: str, period: float) -> float:
    """Seconds until the first check: in (0, period], uniform over ids, the same for the same id."""
    digest = hashlib.blake2b(equipment_id.encode(), digest_size=8).digest()
    return period * (int.from_bytes(digest, "big") + 1) / _SCALE
