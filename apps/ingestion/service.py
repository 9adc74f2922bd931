"""Ingestion without HTTP: validate a batch, dead-letter what is bad, apply the rest per machine."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Protocol

from pydantic import TypeAdapter

from apps.common.contracts import (
    EquipmentIngestResult,
    IngestResult,
    Reading,
    ReadingBatch,
    ReadingRejection,
)
from apps.common.httpguard import loads_orjson_first
from apps.common.httpguard import parse_json as parse_checked_json
from apps.common.metrics import record_ingest
from apps.common.names import TOPIC_READINGS_ACCEPTED, TOPIC_READINGS_DEAD_LETTER
from apps.common.profiles import EquipmentProfile
from apps.common.publisher import Publisher, json_safe
from apps.ingestion.handoff import GroupedHandOff
from apps.ingestion.validation import group_by_equipment, validate_batch

log = logging.getLogger("ingestion")
NOT_APPLIED_RETRY = "not applied, retry"
NOT_ARCHIVED_RETRY = "applied but not archived, retry"
# Readings per readings-accepted message: ~700 KB of JSON, well under the sidecars' 4 MB request limit.
ARCHIVE_MESSAGE_READINGS: Final = 1000
_READINGS = TypeAdapter(list[Reading])


class EquipmentGateway(Protocol):
    """Applies one machine's readings (the EquipmentActor, reached through an ActorProxy)."""

    async def ingest(self, equipment_id: str, readings: list[Reading]) -> EquipmentIngestResult: ...


class IngestionService:
    def __init__(
        self,
        equipment: EquipmentGateway,
        publisher: Publisher,
        profiles: Mapping[str, EquipmentProfile],
        max_concurrency: int = 32,
        linger_seconds: float = 0.0,
    ) -> None:
        self.equipment = equipment
        self.publisher = publisher
        self.profiles = profiles
        self._limit = asyncio.Semaphore(max_concurrency)
        self._handoff = GroupedHandOff(
            publisher, TOPIC_READINGS_ACCEPTED, linger_seconds, ARCHIVE_MESSAGE_READINGS, _accepted
        )

    async def close(self) -> None:
        await self._handoff.close()

    async def ingest(self, raw: Any, source: str, now: datetime | None = None) -> IngestResult:
        """Validate and apply a decoded batch. Raises InvalidBatch when the envelope itself is unusable."""
        now = now or datetime.now(UTC)
        good, rejected = validate_batch(raw, self.profiles, now)
        items = raw.get("readings") if isinstance(raw, Mapping) else raw
        index_of = _Positions(items)
        for rejection in rejected:
            await self.dead_letter(items[rejection.index], rejection.reason, source, rejection.index)
        groups = group_by_equipment(good)
        results = await asyncio.gather(*(self._apply(eid, rs) for eid, rs in groups.items()))
        accepted = duplicates = 0
        health = {}
        taken: list[Reading] = []  # what the actors answered for: the archive's share
        for (eid, readings), result in zip(groups.items(), results, strict=True):
            if isinstance(result, EquipmentIngestResult):
                accepted += result.accepted
                duplicates += result.duplicates
                health[eid] = result.health
                late, far = set(result.too_late), set(result.too_far)
                taken += [r for r in readings if r.seq not in late | far]
                for reading in (r for r in readings if r.seq in late | far):
                    if reading.seq in late:
                        reason = (
                            f"too_late: seq {reading.seq} was never applied and is older than the machine's "
                            f"current window (last applied seq {result.health.last_seq})"
                        )
                    else:
                        reason = (
                            f"too_far: seq {reading.seq} jumps further ahead of the machine's last applied "
                            f"seq {result.health.last_seq} than its actor allows"
                        )
                    index = index_of(reading)
                    rejected.append(ReadingRejection(index=index, equipment_id=eid, reason=reason))
                    await self.dead_letter(reading.model_dump(mode="json"), reason, source, index)
                continue
            # The actor could not be reached (restarting, rebalancing, its store down): a passing failure.
            # The sender is told to send these again, and they are not dead-lettered: they will arrive.
            # Resending is safe: the actor drops sequence numbers it has already applied.
            reason = f"{NOT_APPLIED_RETRY}: equipment actor call failed: {result}"
            for reading in readings:
                index = index_of(reading)
                rejected.append(
                    ReadingRejection(index=index, equipment_id=eid, reason=reason, retryable=True)
                )
        rejected += await self._archive(taken, index_of)
        rejected.sort(key=lambda r: r.index)
        record_ingest(accepted, duplicates, (r.reason for r in rejected))
        return IngestResult(accepted=accepted, duplicates=duplicates, rejected=rejected, health=health)

    async def _archive(self, readings: list[Reading], index_of: _Positions) -> list[ReadingRejection]:
        """Hand the readings the actors took to the archiver (topic readings-accepted, in messages
        shared with requests finishing at the same time: handoff.py), duplicates included: a reading
        resent because its archiving failed is a duplicate to its actor by then, and the archive
        merges copies by (machine, seq). A hand-off that fails makes those readings retryable, so
        that nothing applied is missing from the archive once the sender is done."""
        rejections: list[ReadingRejection] = []
        for start in range(0, len(readings), ARCHIVE_MESSAGE_READINGS):
            part = readings[start : start + ARCHIVE_MESSAGE_READINGS]
            try:
                await self._handoff.send(part)
            except Exception as exc:
                log.warning("archive hand-off of %d readings failed: %s", len(part), exc)
                reason = f"{NOT_ARCHIVED_RETRY}: publishing to {TOPIC_READINGS_ACCEPTED} failed: {exc}"
                rejections += [
                    ReadingRejection(
                        index=index_of(r), equipment_id=r.equipment_id, reason=reason, retryable=True
                    )
                    for r in part
                ]
        return rejections

    async def _apply(self, equipment_id: str, readings: list[Reading]) -> EquipmentIngestResult | str:
        async with self._limit:
            try:
                return await self.equipment.ingest(equipment_id, readings)
            except Exception as exc:  # reported per machine; other machines of the batch go on
                log.warning("actor %s failed: %s", equipment_id, exc)
                return str(exc) or type(exc).__name__

    async def dead_letter(self, item: Any, reason: str, source: str, index: int | None = None) -> None:
        await self.publisher.publish(
            TOPIC_READINGS_DEAD_LETTER,
            {
                "reason": reason,
                "index": index,
                "source": source,
                "reading": json_safe(item),
                "rejected_at": datetime.now(UTC).isoformat(),
            },
        )


def only_retryable(result: IngestResult) -> bool:
    """Nothing applied and nothing wrong with the readings: the whole request should be sent again."""
    return bool(result.rejected) and all(r.retryable for r in result.rejected) and result.accepted == 0


class _Positions:
    """Where each (machine, seq) sits in the request, for naming rejected readings: built once, on
    the first rejection (a lookup per rejected reading by scanning the request was quadratic)."""

    def __init__(self, items: Any) -> None:
        self._items = items
        self._found: dict[tuple[Any, Any], int] | None = None

    def __call__(self, reading: Reading) -> int:
        if self._found is None:
            self._found = {}
            for i, item in enumerate(self._items or []):
                if isinstance(item, Mapping):
                    self._found.setdefault((item.get("equipment_id"), item.get("seq")), i)
        return self._found.get((reading.equipment_id, reading.seq), 0)


def _accepted(readings: list[Reading]) -> ReadingBatch:
    """A readings-accepted message: {"readings": [...]}, written to JSON by pydantic in one pass
    (not dumped to dicts, then by json.dumps: several times the CPU). Built without validation: its
    readings are Reading models validated already."""
    return ReadingBatch.model_construct(readings=readings)


def readings_json(readings: list[Reading]) -> str:
    return _READINGS.dump_json(readings).decode()


def parse_json(body: bytes) -> Any:
    """Decode a request body; ValueError with the position of the problem when it is not JSON.

    orjson first (a quarter of json's CPU on a reading). What it refuses goes to json (the shared
    `httpguard.parse_json`), which decides as it always did: NaN and Infinity literals (json reads
    them, and the reading carrying one is then rejected on its own), integers past 64 bits, UTF-16/32
    bodies, a byte-order mark, lone surrogate escapes, bytes that are no text, and the text that is not
    JSON at all, named with json's message and position. A body
    with a run of 19 digits goes to json without asking orjson, which would read an integer outside
    64 bits as a float (a huge `seq` must be refused as the integer it is)."""
    return loads_orjson_first(body, parse_checked_json)
