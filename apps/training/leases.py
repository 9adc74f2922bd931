"""Which training replica may start an automated job (schedule, drift, start-up) for a profile.

Every replica's sidecar fires the `retrain-schedule` binding, and every replica starting on a fresh
registry would train a first model: without a guard, two replicas would train the same model twice. So
such a job is started only once its replica holds the profile's claim, a key in `modelstore`:

    jobs/claims/<profile>   {job, owner, until}: the job holding it, its replica, how long (etag-guarded)

A claim is taken only when the key is absent, expired, or already the job's (an etag-guarded write: of
two replicas racing, one wins); its owner renews it with the job's lease (jobstore.JobBook) and gives it
up when the job ends. A replica that dies leaves it to expire (`until`, and a TTL on the key).
Jobs an operator asks for (`POST /v1/train`, `vigil train`) take no claim: they run as asked.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Protocol

from dapr.aio.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError, DaprInternalError
from pydantic import BaseModel, ConfigDict, ValidationError

from apps.common.names import MODEL_STORE
from apps.common.statecas import StateContention, update_state


class ClaimUnavailable(Exception):
    """The store did not answer: the job is not started (the next fire tries again)."""


class Claim(BaseModel):
    model_config = ConfigDict(frozen=True)

    job: str
    owner: str
    until: datetime


def claim_key(profile: str) -> str:
    return f"jobs/claims/{profile}"


def _held(stored: bytes | None) -> Claim | None:
    if stored is None:
        return None
    try:
        return Claim.model_validate_json(stored)
    except ValidationError:  # unreadable: nobody can show they hold it
        return None


def claimed(stored: bytes | None, mine: Claim, now: datetime) -> str | None:
    """The claim to write for `mine` over `stored` (None: another job holds it, unexpired)."""
    held = _held(stored)
    if held is not None and held.job != mine.job and held.until > now:
        return None
    return mine.model_dump_json()


def released(stored: bytes | None, job: str, now: datetime) -> str | None:
    """The claim `job` gives up (expired now); None when it does not hold it (nothing to write)."""
    held = _held(stored)
    if held is None or held.job != job:
        return None
    return held.model_copy(update={"until": now}).model_dump_json()


class ClaimStore(Protocol):
    async def claim(self, profile: str, mine: Claim, now: datetime) -> Claim | None:
        """None once `mine` holds the profile's claim; else the claim that holds it."""
        ...

    async def release(self, profile: str, job: str, now: datetime) -> None: ...


class DaprClaimStore:
    """ClaimStore on the Dapr state API (etag-guarded writes with a TTL)."""

    def __init__(self, client: DaprClient, lease_seconds: float, store: str = MODEL_STORE) -> None:
        self.client = client
        self.ttl = math.ceil(lease_seconds) + 1
        self.store = store

    async def claim(self, profile: str, mine: Claim, now: datetime) -> Claim | None:
        holder: list[Claim | None] = [None]

        def change(stored: bytes | None) -> str | None:
            holder[0] = _held(stored)
            return claimed(stored, mine, now)

        try:
            taken = await update_state(
                self.client, self.store, claim_key(profile), change, ttl_seconds=self.ttl
            )
        except (DaprGrpcError, DaprInternalError, StateContention) as exc:
            raise ClaimUnavailable(f"the claim on {profile} jobs could not be taken: {exc}") from exc
        return None if taken else holder[0]

    async def release(self, profile: str, job: str, now: datetime) -> None:
        try:
            await update_state(
                self.client,
                self.store,
                claim_key(profile),
                lambda s: released(s, job, now),
                ttl_seconds=self.ttl,
            )
        except (DaprGrpcError, DaprInternalError, StateContention) as exc:
            raise ClaimUnavailable(f"the claim on {profile} jobs could not be given up: {exc}") from exc
