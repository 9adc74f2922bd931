"""Lossless compact text for the float arrays of an actor's state (window, baseline, history).

A machine's state was mostly float64 arrays as base64 and lists of JSON numbers: ~46 KB after 190
readings (window 60 of 17 columns, kept twice over for late readings), read and written whole on every
actor call. Here a 2-D array is stored column by column as base64 text behind a prefix. A column whose
every value is exactly `k / 10**d` for integers k and a small d (sensors report at a fixed resolution,
seqs and reading times in microseconds are integers) is stored as its first k and the differences
between rows in as few bytes as hold them; a column of float32 values in 4 bytes; any other column as
its little-endian float64 bytes; the whole zlib-compressed ("p2:"; "p1:", as written before
compression, is still read). Decoding divides k by 10**d again: IEEE division is correctly
rounded, so it gives back the very same double, and the encoder checks that bit for bit (a -0.0, a
NaN, a value that is not such a quotient keeps its bytes), so features computed from a decoded window
equal those computed before it was stored.

Packing a window or a history costs ~0.15-0.2 ms, and still ~0.08 ms a few rows (numpy's cost per
call), too much to pay for both on every save when one row changed: `PackedRows` keeps a packed snapshot of
them between saves and adds the rows appended since as raw bytes (codec.py's layout 3).
"""

from __future__ import annotations

import base64
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

PREFIX: Final = "p1:"  # packed columns, as written before they were compressed (still read)
ZPREFIX: Final = "p2:"  # the same bytes zlib-compressed (what `pack_columns` writes)
TEXT_PREFIX: Final = "z1:"  # zlib-compressed text
MAX_DECIMALS: Final = 6
RAW: Final = -1  # the column's code for "raw float64 bytes"
F4: Final = -2  # the column's code for "float32 bytes" (every value a float32 exactly)
_INT_TYPES: Final = {1: "<i1", 2: "<i2", 4: "<i4", 8: "<i8"}
_EXACT_INT: Final = float(2**52)  # larger k lose integer precision as float64 in the division
_HEADER = struct.Struct("<II")  # rows, columns


_SCALES: Final = 10.0 ** np.arange(MAX_DECIMALS + 1, dtype=np.float64)
# Per kind of array ("window", "history"...) and column count, the decimals its last search found:
# tried first, in one pass, since arrays of one kind hold the same sensors (see `_decimals_as`).
_HINTS: dict[tuple[str, int], np.ndarray] = {}


def _decimals(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the smallest d in [0, MAX_DECIMALS] for which every value is exactly k / 10**d
    with k an integer (bit for bit: a -0.0 is not), else RAW; and the k of those columns (0 for RAW)."""
    scales = _SCALES[:, None, None]
    with np.errstate(invalid="ignore", over="ignore"):
        rounded = np.round(array[None, :, :] * scales)  # [d, rows, columns], all d at once
        fits = np.abs(rounded) < _EXACT_INT  # also False for NaN and inf
        k = np.where(fits, rounded, 0.0).astype(np.int64)
        # Decoding divides the integer k, so the check does too (-0.0 becomes 0 and fails here).
        exact = (k.astype(np.float64) / scales).view(np.int64) == array.view(np.int64)[None, :, :]
    ok = np.all(exact & fits, axis=1)  # [d, columns]
    found = ok.any(axis=0)
    first = ok.argmax(axis=0)
    codes = np.where(found, first, RAW).astype(np.int8)
    columns = np.arange(array.shape[1])
    ks = np.where(found[None, :], k[first, :, columns].T, 0)
    return codes, ks


def _decimals_as(array: np.ndarray, hint: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """`_decimals` in one pass when the columns' decimals are those of `hint` (the arrays of one kind
    hold the same sensors): the codes and k if every hinted column holds, else None. A column the hint
    has RAW stays RAW (always lossless), the smallest d is not searched again."""
    scaled = hint >= 0
    scales = np.where(scaled, _SCALES[np.maximum(hint, 0)], 1.0)
    with np.errstate(invalid="ignore", over="ignore"):
        rounded = np.round(array * scales)
        fits = np.abs(rounded) < _EXACT_INT
        k = np.where(fits, rounded, 0.0).astype(np.int64)
        exact = ((k.astype(np.float64) / scales).view(np.int64) == array.view(np.int64)) & fits
    if not np.all(exact[:, scaled]):
        return None
    k[:, ~scaled] = 0
    return hint.copy(), k


def _narrowest(values: np.ndarray) -> np.ndarray:
    """Per column of int64 `values`, the byte width (1, 2, 4 or 8) that holds all of them."""
    if values.size == 0:
        return np.ones(values.shape[1], dtype=np.uint8)
    lo, hi = values.min(axis=0), values.max(axis=0)
    widths = np.full(values.shape[1], 8, dtype=np.uint8)
    for width in (4, 2, 1):
        bound = 1 << (8 * width - 1)
        widths[(lo >= -bound) & (hi < bound)] = width
    return widths


def pack_columns(array: np.ndarray, kind: str = "") -> str:
    """`array` ([rows, columns] of float64) as compact text; `unpack_columns` gives it back exactly.
    `kind` names what the array holds, for the decimals hint (any name; "" for none).

    Integer columns (k of k / 10**d) are stored as their first k (int64) and then the differences
    between consecutive rows in the fewest bytes that hold them (a sensor at 0.01 resolution moving a
    few units between readings: 2 bytes a value, a seq counting up: 1); a column of float32 values
    (a model's predictions) in 4 bytes; any other in its 8. The whole then zlib-compressed (level 1):
    the high bytes of small differences, deltas that repeat (seqs counting up, one model version) and
    the float32 exponents shrink by a third overall: 4.4 KB of a machine's 18.9 KB state with a full
    history (issue 13's target is 16 KiB), for ~0.05-0.1 ms per array; the window and the history
    are packed once every few saves (`PackedRows`), the baseline and head once (codec.py).
    """
    a = np.asarray(array, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError("pack_columns takes a 2-D array")
    rows, columns = a.shape
    hint = _HINTS.get((kind, columns)) if kind else None
    found = _decimals_as(a, hint) if hint is not None and rows else None
    if found is not None:
        codes, ks = found
    elif rows:
        codes, ks = _decimals(a)
        if kind:
            _HINTS[(kind, columns)] = codes.copy()
    else:
        codes, ks = np.full(columns, RAW, dtype=np.int8), np.zeros((0, columns), dtype=np.int64)
    raw = codes == RAW
    if rows and raw.any():
        with np.errstate(over="ignore", invalid="ignore"):  # a double beyond float32 is simply not one
            narrowed = a[:, raw].astype(np.float32).astype(np.float64)
        # Bit for bit, as the decimals: a NaN never compares equal, so its column keeps 8 bytes.
        exact = np.all(narrowed.view(np.int64) == a[:, raw].view(np.int64), axis=0)
        codes[np.flatnonzero(raw)[exact]] = F4
    scaled = codes >= 0
    firsts = ks[0, scaled] if rows else np.zeros(int(scaled.sum()), dtype=np.int64)
    deltas = np.diff(ks[:, scaled], axis=0)
    widths = np.zeros(columns, dtype=np.uint8)
    widths[scaled] = _narrowest(deltas)
    parts = [_HEADER.pack(rows, columns), codes.tobytes(), widths.tobytes(), firsts.astype("<i8").tobytes()]
    for width, dtype in _INT_TYPES.items():
        chosen = widths[scaled] == width
        if chosen.any():
            parts.append(np.ascontiguousarray(deltas[:, chosen].T, dtype=dtype).tobytes())
    parts.append(np.ascontiguousarray(a[:, codes == F4].T, dtype="<f4").tobytes())
    parts.append(np.ascontiguousarray(a[:, codes == RAW].T, dtype="<f8").tobytes())
    return ZPREFIX + base64.b64encode(zlib.compress(b"".join(parts), 1)).decode("ascii")


def unpack_columns(text: str) -> np.ndarray:
    """The array `pack_columns` packed, compressed ("p2:") or as written before ("p1:")."""
    if not isinstance(text, str) or not text.startswith((PREFIX, ZPREFIX)):
        raise ValueError("not a packed array")
    raw = base64.b64decode(text[len(PREFIX) :])
    if text.startswith(ZPREFIX):
        try:
            raw = zlib.decompress(raw)
        except zlib.error as exc:
            raise ValueError(f"packed array: {exc}") from exc
    rows, columns = _HEADER.unpack_from(raw)
    offset = _HEADER.size

    def take(dtype: str, count: int) -> np.ndarray:
        nonlocal offset
        out = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)
        offset += out.nbytes
        return out

    codes = take("i1", columns)
    widths = take("u1", columns)
    scaled = codes >= 0
    n_scaled = int(scaled.sum())
    firsts = take("<i8", n_scaled)
    deltas = np.zeros((max(rows - 1, 0), n_scaled), dtype=np.int64)
    for width, dtype in _INT_TYPES.items():
        chosen = widths[scaled] == width
        if chosen.any() and rows > 1:
            deltas[:, chosen] = take(dtype, (rows - 1) * int(chosen.sum())).reshape(-1, max(rows - 1, 0)).T
    out = np.empty((rows, columns), dtype=np.float64)
    if rows:
        k = np.cumsum(np.vstack((firsts[None, :], deltas)), axis=0)
        out[:, scaled] = k.astype(np.float64) / (10.0 ** codes[scaled].astype(np.float64))
    f4, f8 = codes == F4, codes == RAW
    out[:, f4] = take("<f4", rows * int(f4.sum())).reshape(-1, rows).T if rows else out[:, f4]
    out[:, f8] = take("<f8", rows * int(f8.sum())).reshape(-1, rows).T if rows else out[:, f8]
    if offset != len(raw):
        raise ValueError("packed array: length does not match its header")
    return out


def pack_text(text: str) -> str:
    """Repetitive text (JSON of many alike dicts) zlib-compressed, as base64 behind TEXT_PREFIX."""
    return TEXT_PREFIX + base64.b64encode(zlib.compress(text.encode(), 1)).decode("ascii")


def unpack_text(packed: str) -> str:
    if not isinstance(packed, str) or not packed.startswith(TEXT_PREFIX):
        raise ValueError("not packed text")
    return zlib.decompress(base64.b64decode(packed[len(TEXT_PREFIX) :])).decode()


def encode_rows(rows: np.ndarray) -> str:
    """A few rows as base64 of their little-endian float64 bytes: lossless by construction and ~2 µs
    for a handful of rows, where `pack_columns` costs ~0.3 ms whatever their number."""
    return base64.b64encode(np.ascontiguousarray(rows, dtype="<f8").tobytes()).decode("ascii")


def decode_rows(text: str, columns: int) -> np.ndarray:
    raw = base64.b64decode(text)
    if len(raw) % (8 * columns):
        raise ValueError("raw rows: length is not a whole number of rows")
    return np.frombuffer(raw, dtype="<f8").reshape(-1, columns).astype(np.float64)


@dataclass(slots=True, frozen=True, eq=False)
class Snapshot:
    """A packed snapshot of rows kept in actor state, as a save left it, without the rows: its
    `pack_columns` text (reused as is), its row count, how many of its oldest rows were no longer
    held, and how many rows were held in all (the snapshot's from `skip` on, then a tail of the rows
    appended since). What the next save needs to store its rows from the same snapshot."""

    text: str
    rows: int
    skip: int
    held: int

    @property
    def tail_rows(self) -> int:
        return self.held - (self.rows - self.skip)

    def advance(self, dropped: int, added: int, tail_limit: int) -> Snapshot | None:
        """The same snapshot once the `dropped` oldest rows held are gone and `added` rows appended,
        or None when the rows are to be packed afresh: the tail would pass `tail_limit` rows, or no
        snapshot row is held any longer (it would be stored for nothing)."""
        if not dropped and not added:
            return self
        skip, held = self.skip + dropped, self.held - dropped + added
        if (skip and skip >= self.rows) or held - (self.rows - skip) > tail_limit:
            return None
        return Snapshot(self.text, self.rows, skip, held)


@dataclass(slots=True, frozen=True, eq=False)
class PackedRows:
    """Rows kept in actor state and written on every save, stored so that a save costs what changed:
    a packed snapshot of the rows at some earlier save and the rows appended since it (`tail`,
    stored as `encode_rows`)."""

    snapshot: Snapshot
    tail: np.ndarray

    @classmethod
    def fresh(cls, rows: np.ndarray, kind: str) -> PackedRows:
        return cls(Snapshot(pack_columns(rows, kind), len(rows), 0, len(rows)), rows[len(rows) :])

    def to_dict(self) -> dict[str, Any]:
        return {"packed": self.snapshot.text, "skip": self.snapshot.skip, "tail": encode_rows(self.tail)}


def read_rows(data: dict[str, Any]) -> tuple[Snapshot, np.ndarray]:
    """Rows `PackedRows.to_dict` stored: their snapshot, and the rows held (the snapshot's from
    `skip` on, then the tail)."""
    snapshot = unpack_columns(data["packed"])
    skip = int(data["skip"])
    if not 0 <= skip <= len(snapshot):
        raise ValueError("packed rows: skip beyond the snapshot")
    held = np.concatenate((snapshot[skip:], decode_rows(data["tail"], snapshot.shape[1])))
    return Snapshot(data["packed"], len(snapshot), skip, len(held)), held


def _weights(columns: int) -> np.ndarray:
    weights = _WEIGHTS.get(columns)
    if weights is None:
        odd = np.arange(1, 2 * columns, 2, dtype=np.uint64)
        weights = _WEIGHTS[columns] = odd * np.uint64(0x9E3779B97F4A7C15)  # odd times odd: odd
    return weights


_WEIGHTS: dict[int, np.ndarray] = {}
_MIX: Final = np.uint64(0xBF58476D1CE4E5B9)  # odd
_SHIFTS: Final = (np.uint64(31), np.uint64(29))


def row_checksums(rows: np.ndarray) -> np.ndarray:
    """Per row of float64 `rows`, 64 bits of its bits: each value's 64 bits mixed by steps each
    one-to-one on 64-bit words (a shift-xor, a product by an odd constant, invertible mod 2**64, a
    shift-xor), then summed, wrapping, each times an odd constant of its column. One value changed
    (one bit of it) changes its row's sum; several changes cancelling is a ~2**-64 chance, the mixing
    before the sum is what keeps structured ones apart (two flipped signs, which a bare product would
    cancel; values swapped between columns). ~7 µs for a window of 119 rows of 19 columns, where
    the rows themselves kept to compare with were 18 KB a machine."""
    bits = np.ascontiguousarray(rows, dtype=np.float64).view(np.uint64)
    mixed = bits >> _SHIFTS[0]
    mixed ^= bits
    mixed *= _MIX
    mixed ^= mixed >> _SHIFTS[1]
    return mixed @ _weights(bits.shape[1])  # integer products and sums wrap mod 2**64


@dataclass(slots=True, frozen=True, eq=False)
class SavedRows:
    """What is kept of rows saved as `PackedRows` to store the next save's from the same snapshot:
    the snapshot and a checksum per row held (`row_checksums`), not the rows (which the next save
    has anew anyway): 8 bytes a row where a copy of a window's rows is 152."""

    snapshot: Snapshot
    checksums: np.ndarray

    @classmethod
    def of(cls, snapshot: Snapshot, rows: np.ndarray) -> SavedRows:
        return cls(snapshot, row_checksums(rows))

    def follow(self, rows: np.ndarray, kind: str, tail_limit: int) -> tuple[PackedRows, SavedRows]:
        """These rows stored from this snapshot when they are the rows held less some oldest plus
        some new, else packed afresh; and what to keep of them for the next save. Rows are compared
        by their checksums: a row's seq is among its values, and seqs are unique among the rows held,
        so the first row now is found among those held by its checksum alone."""
        checksums = row_checksums(rows)
        before = self.checksums
        starts = np.flatnonzero(before == checksums[0]) if len(checksums) else before[:0]
        dropped = int(starts[0]) if len(starts) else len(before)
        kept = len(before) - dropped
        snapshot = None
        if kept <= len(rows) and checksums[:kept].tobytes() == before[dropped:].tobytes():
            snapshot = self.snapshot.advance(dropped, len(rows) - kept, tail_limit)
        packed = (
            PackedRows.fresh(rows, kind)
            if snapshot is None
            else PackedRows(snapshot, rows[len(rows) - snapshot.tail_rows :])
        )
        return packed, SavedRows(packed.snapshot, checksums)
