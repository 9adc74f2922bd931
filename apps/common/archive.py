"""The reading archive's format and layout: what the `archive` binding holds (pure: bytes in, bytes out).

Every accepted reading and every equipment event (the labels) end up here, for the life of the fleet,
so that training learns from the machines the platform watches. Writers: the archiver app (live
readings), ingestion (events), `vigil import` (histories). Readers: training (`apps/training/history`).

Layout below the binding's root (a folder with bindings.localstorage, a bucket with a blob store):

    readings/<equipment id>/<YYYY-MM-DD>/<first seq>-<last seq>-<digest>.parquet
    events/<equipment id>/<seq>-<kind>.json

A reading chunk holds one machine's readings of one UTC day (of the readings' timestamps), sorted by
seq. Parquet because the archive outlives any one program: it is the columnar format every analysis
tool reads (pandas, DuckDB, Spark, Athena), it carries its schema (types, a column per channel, UTC
timestamps) and compresses each column on its own (zstd), so a year of a fleet stays small and a
reliability engineer can open a chunk without Vigil. NumPy's .npz would need neither pyarrow nor a
schema, but only Python reads it and it has no types beyond arrays.

The digest in a chunk's name is of its content, so writing the same readings twice (a flush retried
after a crash) replaces the file instead of adding one. Readings still reach the archive more than
once (a sender resends, a message is redelivered): readers merge by `(machine, seq)`, keeping the
first copy in path order (copies of one seq carry the same reading).
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from apps.common.contracts import EquipmentEvent, Reading

READINGS_DIR: Final = "readings"
EVENTS_DIR: Final = "events"
FORMAT_VERSION: Final = "1"
_META_KEY: Final = b"vigil.archive"
_FIXED_COLUMNS: Final = ("equipment_id", "profile", "seq", "timestamp")


class ArchiveFormatError(ValueError):
    """A chunk that is not one of ours (or is damaged): the message says which and why."""


@dataclass(frozen=True, slots=True)
class Block:
    """One machine's readings, column by column: `seq` int64, `timestamp` datetime64[us] (UTC) and one
    float64 array per channel (NaN where a reading did not carry that channel)."""

    equipment_id: str
    profile: str
    seq: np.ndarray
    timestamp: np.ndarray
    values: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.seq.shape[0]
        if self.timestamp.shape != (n,) or any(v.shape != (n,) for v in self.values.values()):
            raise ValueError("every column of a block must have one entry per reading")

    def __len__(self) -> int:
        return int(self.seq.shape[0])

    def take(self, index: np.ndarray) -> Block:
        return Block(
            self.equipment_id,
            self.profile,
            self.seq[index],
            self.timestamp[index],
            {k: v[index] for k, v in self.values.items()},
        )

    def matrix(self, channels: Sequence[str]) -> np.ndarray:
        """[readings, len(channels)] float64 in `channels` order; a channel never sent is all NaN."""
        out = np.full((len(self), len(channels)), np.nan)
        for j, name in enumerate(channels):
            if name in self.values:
                out[:, j] = self.values[name]
        return out


def to_utc_micros(moment: datetime) -> np.datetime64:
    return np.datetime64(moment.astimezone(UTC).replace(tzinfo=None), "us")


def blocks_from_readings(readings: Iterable[Reading]) -> list[Block]:
    """Validated readings (any machines, any order) as one block per machine, in first-seen order."""
    grouped: dict[str, list[Reading]] = {}
    for reading in readings:
        grouped.setdefault(reading.equipment_id, []).append(reading)
    blocks = []
    for equipment_id, rows in grouped.items():
        channels = sorted({name for r in rows for name in r.values})
        blocks.append(
            Block(
                equipment_id,
                rows[0].profile,
                np.array([r.seq for r in rows], dtype=np.int64),
                np.array([to_utc_micros(r.timestamp) for r in rows], dtype="datetime64[us]"),
                {c: np.array([r.values.get(c, np.nan) for r in rows], dtype=np.float64) for c in channels},
            )
        )
    return blocks


def _sorted_unique(block: Block) -> Block:
    # stable sort, then the first of each run of equal seqs: the first copy wins, as when reading
    order = np.argsort(block.seq, kind="stable")
    seq = block.seq[order]
    keep = np.ones(seq.shape[0], dtype=bool)
    keep[1:] = seq[1:] != seq[:-1]
    return block.take(order[keep])


def split_by_day(block: Block) -> list[Block]:
    """A machine's readings cut into one block per UTC day of their timestamps, each sorted by seq
    with one reading per seq."""
    days = block.timestamp.astype("datetime64[D]")
    return [_sorted_unique(block.take(np.flatnonzero(days == day))) for day in np.unique(days)]


def _digest(block: Block) -> str:
    h = hashlib.sha256(f"{block.equipment_id}\0{block.profile}\0".encode())
    h.update(np.ascontiguousarray(block.seq, dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(block.timestamp.astype(np.int64), dtype="<i8").tobytes())
    for name in sorted(block.values):
        h.update(name.encode() + b"\0")
        h.update(np.ascontiguousarray(block.values[name], dtype="<f8").tobytes())
    return h.hexdigest()[:16]


def chunk_path(block: Block) -> str:
    """Where a day-block is stored: per machine, per day, named by its seq range and content."""
    day = str(block.timestamp[0].astype("datetime64[D]"))
    first, last = int(block.seq[0]), int(block.seq[-1])
    return f"{READINGS_DIR}/{block.equipment_id}/{day}/{first:012d}-{last:012d}-{_digest(block)}.parquet"


def encode_chunk(block: Block, source: str) -> bytes:
    """Parquet bytes of a block (zstd); `source` (e.g. "ingestion", "import cmapss FD001 train") is kept
    in the file's metadata, beside the format version."""
    columns: dict[str, pa.Array] = {
        "equipment_id": pa.array([block.equipment_id] * len(block), pa.string()).dictionary_encode(),
        "profile": pa.array([block.profile] * len(block), pa.string()).dictionary_encode(),
        "seq": pa.array(block.seq, pa.int64()),
        "timestamp": pa.array(block.timestamp, pa.timestamp("us", tz="UTC")),
    }
    for name in sorted(block.values):
        columns[name] = pa.array(block.values[name], pa.float64(), from_pandas=True)  # NaN -> null
    table = pa.table(columns).replace_schema_metadata({_META_KEY: FORMAT_VERSION, b"vigil.source": source})
    out = io.BytesIO()
    pq.write_table(table, out, compression="zstd")
    return out.getvalue()


def decode_chunk(data: bytes, where: str = "chunk") -> Block:
    try:
        table = pq.read_table(io.BytesIO(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise ArchiveFormatError(f"{where}: not a Parquet file: {exc}") from None
    meta = table.schema.metadata or {}
    if meta.get(_META_KEY) != FORMAT_VERSION.encode():
        raise ArchiveFormatError(f"{where}: not a Vigil archive chunk of format {FORMAT_VERSION}")
    if len(table) == 0:
        raise ArchiveFormatError(f"{where}: empty chunk")
    ids = table.column("equipment_id").unique().to_pylist()
    profiles = table.column("profile").unique().to_pylist()
    if len(ids) != 1 or len(profiles) != 1:
        raise ArchiveFormatError(f"{where}: a chunk holds one machine of one profile, found {ids} {profiles}")
    return Block(
        str(ids[0]),
        str(profiles[0]),
        table.column("seq").to_numpy().astype(np.int64),
        table.column("timestamp").to_numpy().astype("datetime64[us]"),
        {
            name: table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
            for name in table.column_names
            if name not in _FIXED_COLUMNS
        },
    )


def merge_blocks(blocks: Iterable[Block]) -> dict[str, Block]:
    """Every machine's readings as one block sorted by seq, one reading per seq (the first copy in
    the order given wins). A channel one block lacks is NaN in its rows."""
    by_machine: dict[str, list[Block]] = {}
    for block in blocks:
        by_machine.setdefault(block.equipment_id, []).append(block)
    merged = {}
    for equipment_id, parts in by_machine.items():
        channels = sorted({c for b in parts for c in b.values})
        whole = Block(
            equipment_id,
            parts[-1].profile,  # a machine that changed profile is judged by its latest one
            np.concatenate([b.seq for b in parts]),
            np.concatenate([b.timestamp for b in parts]),
            {c: np.concatenate([b.matrix([c])[:, 0] for b in parts]) for c in channels},
        )
        merged[equipment_id] = _sorted_unique(whole)
    return merged


def event_path(event: EquipmentEvent) -> str:
    """One file per (machine, seq, kind): recording the same event twice writes the same file."""
    return f"{EVENTS_DIR}/{event.equipment_id}/{event.seq:012d}-{event.kind}.json"
