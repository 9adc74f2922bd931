"""The reading archive through the Dapr output binding `archive` (layout and format: apps/common/archive.py).

Any binding with the operations create, get and list will do: bindings.localstorage (a folder, the
embedded and Redis profiles) or a blob store such as bindings.aws.s3 (Kubernetes), a component swap.
Data is sent base64-encoded, which is how binary content travels through both (localstorage decodes
valid base64 as daprd does; the s3 component sets `decodeBase64`).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from dapr.aio.clients import DaprClient

from apps.common.archive import (
    EVENTS_DIR,
    READINGS_DIR,
    ArchiveFormatError,
    Block,
    chunk_path,
    decode_chunk,
    encode_chunk,
    event_path,
    merge_blocks,
)
from apps.common.contracts import EquipmentEvent
from apps.common.names import ARCHIVE_BINDING

log = logging.getLogger("archive")

# Path components of each kind of file below the root (machine ids never contain "/"): how a listed
# path, absolute with localstorage or a key with a blob store, is cut back to its archive path.
_DEPTH: Final = {READINGS_DIR: 4, EVENTS_DIR: 3}


def archive_paths(listing: Any, kind_dir: str) -> list[str]:
    """Archive paths (`readings/...`, `events/...`) of a binding's `list` answer, sorted.

    bindings.localstorage answers a JSON array of absolute paths (or null); blob stores answer their
    listing object, e.g. S3's `{"Contents": [{"Key": ...}, ...]}`.
    """
    if isinstance(listing, dict):
        names = [item.get("Key", "") for item in listing.get("Contents") or [] if isinstance(item, dict)]
    else:
        names = [n for n in listing or [] if isinstance(n, str)]
    depth = _DEPTH[kind_dir]
    out = []
    for name in names:
        parts = name.replace("\\", "/").split("/")
        if len(parts) >= depth and parts[-depth] == kind_dir:
            out.append("/".join(parts[-depth:]))
    return sorted(out)


@dataclass
class ArchiveRead:
    """What a read found: readings merged by (machine, seq), events, and chunks it had to skip."""

    histories: dict[str, Block]
    events: list[EquipmentEvent]
    skipped: list[str] = field(default_factory=list)  # damaged or foreign files, with the reason


class DaprArchive:
    def __init__(self, client: DaprClient, binding: str = ARCHIVE_BINDING) -> None:
        self.client = client
        self.binding = binding

    async def put(self, path: str, data: bytes) -> None:
        await self.client.invoke_binding(self.binding, "create", base64.b64encode(data), {"fileName": path})

    async def get(self, path: str) -> bytes:
        answer = await self.client.invoke_binding(self.binding, "get", b"", {"fileName": path})
        return bytes(answer.data)

    async def list(self, kind_dir: str, equipment_id: str | None = None) -> list[str]:
        """Archive paths below `readings/` or `events/` (of one machine): empty when there are none.

        localstorage lists the `fileName` folder at once; a blob store lists keys under `prefix`, a page
        at a time (S3: `IsTruncated`, continued from the last key with `marker`)."""
        folder = kind_dir if equipment_id is None else f"{kind_dir}/{equipment_id}"
        request: dict[str, str] = {"prefix": f"{folder}/"}
        paths: list[str] = []
        while True:
            try:
                answer = await self.client.invoke_binding(
                    self.binding, "list", json.dumps(request).encode(), {"fileName": folder}
                )
            except Exception as exc:
                # a folder nothing was ever written to does not exist yet (localstorage: the stat fails)
                if "no such file or directory" in str(exc).lower():
                    return []
                raise
            listing = json.loads(answer.data or b"null")
            page = archive_paths(listing, kind_dir)
            paths += page
            if not (isinstance(listing, dict) and listing.get("IsTruncated") and page):
                return sorted(paths)
            request["marker"] = listing["Contents"][-1]["Key"]

    async def write_block(self, block: Block, source: str) -> str:
        """One day-block (apps.common.archive.split_by_day) as a chunk; returns its path."""
        path = chunk_path(block)
        await self.put(path, encode_chunk(block, source))
        return path

    async def write_event(self, event: EquipmentEvent) -> str:
        path = event_path(event)
        await self.put(path, event.model_dump_json().encode())
        return path

    async def events(self, equipment_id: str | None = None) -> list[EquipmentEvent]:
        """Events (of one machine, or all), oldest seq first per machine."""
        paths = await self.list(EVENTS_DIR, equipment_id)
        blobs = await asyncio.gather(*(self.get(p) for p in paths))
        return [EquipmentEvent.model_validate_json(b) for b in blobs]

    async def read(self, equipment_ids: Iterable[str] | None = None, concurrency: int = 8) -> ArchiveRead:
        """Every reading chunk and event (of the given machines), merged by (machine, seq)."""
        wanted = None if equipment_ids is None else sorted(set(equipment_ids))
        if wanted is None:
            paths, events = await self.list(READINGS_DIR), await self.events()
        else:
            paths = [p for eid in wanted for p in await self.list(READINGS_DIR, eid)]
            events = [e for eid in wanted for e in await self.events(eid)]
        limit = asyncio.Semaphore(concurrency)

        async def fetch(path: str) -> Block | str:
            async with limit:
                data = await self.get(path)
            try:
                return decode_chunk(data, path)
            except ArchiveFormatError as exc:
                log.warning("skipping %s", exc)
                return str(exc)

        fetched = await asyncio.gather(*(fetch(p) for p in paths))
        blocks = [b for b in fetched if isinstance(b, Block)]
        return ArchiveRead(
            histories=merge_blocks(blocks),
            events=events,
            skipped=[s for s in fetched if isinstance(s, str)],
        )
