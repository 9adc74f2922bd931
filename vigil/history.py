"""Historical run-to-failure data as archive content (pure): `vigil import cmapss|csv|ai4i FILE` writes it.

A history is what the platform would have archived had it watched those machines: one block of
readings per machine (apps.common.archive.Block) and the events that label them. Imported data goes
through the same checks as live readings (the profile's channels and plausible ranges), and every
problem names the file, the line and the column, so a bad file is fixed, not half imported.

C-MAPSS (`train_FD00x.txt[.gz]`, `test_FD00x.txt[.gz]`): unit -> machine `<prefix><unit:03d>`, cycle ->
seq, a synthetic timestamp per cycle (C-MAPSS has none: `start` + (cycle - 1) x `cycle`). Each
training unit ran to failure, so it gets a `failure` event at its last cycle; a test unit gets one
only from its true RUL (`--rul RUL_FD00x.txt`): at last cycle + RUL, after its data stops. The
default prefix is the one `vigil replay` uses (`fd001-`, `fd001-test-`), so a replayed engine and
its imported history are one machine.

CSV (any profile): a header row, then one reading per line. Columns: `equipment_id`, `seq`, optionally
`timestamp` (ISO 8601 with a zone; else synthetic as above, from seq) and `event` (`failure`,
`maintenance` or `replaced`: it happened after this reading; empty otherwise); every other column is
a channel of the profile, and a reading must carry the profile's informative sensors.

AI4I 2020 (`data/ai4i2020/ai4i2020.csv`, the `milling` profile): one machine, `UDI` -> seq, the product
quality as a channel, a `failure` event at every row the file marks as a machine failure.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final, get_args

import numpy as np

from apps.common import ai4i
from apps.common.archive import Block, to_utc_micros
from apps.common.cmapss import COLUMNS
from apps.common.contracts import EQUIPMENT_ID_PATTERN, EquipmentEvent, EventKind
from apps.common.profiles import EquipmentProfile

DEFAULT_START: Final = datetime(2000, 1, 1, tzinfo=UTC)
DEFAULT_CYCLE: Final = timedelta(hours=1)
_CMAPSS_NAME = re.compile(r"^(train|test)_(FD\d{3})\.txt(\.gz)?$", re.IGNORECASE)
_EVENT_KINDS: Final = frozenset(get_args(EventKind))


class HistoryFileError(ValueError):
    """The file cannot be imported; the message names the file, and the line and column when it can."""


@dataclass(frozen=True, slots=True)
class History:
    blocks: list[Block]  # one per machine, sorted by seq
    events: list[EquipmentEvent]

    @property
    def readings(self) -> int:
        return sum(len(b) for b in self.blocks)


def _open_text(path: Path) -> io.TextIOBase:
    if not path.is_file():
        raise HistoryFileError(f"{path}: no such file")
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")  # type: ignore[return-value]
    return path.open(encoding="utf-8-sig", newline="")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with _open_text(path) as fh:
            yield from enumerate(fh, start=1)
    except (UnicodeDecodeError, gzip.BadGzipFile, EOFError) as exc:
        raise HistoryFileError(f"{path}: not a text file: {exc}") from None


def _check_range(profile: EquipmentProfile, channel: str, value: float, where: str) -> None:
    if not math.isfinite(value):
        raise HistoryFileError(f"{where}: {channel} is not a finite number ({value})")
    lo, hi = profile.channels[channel]
    if not lo <= value <= hi:
        raise HistoryFileError(
            f"{where}: {channel} = {value:g} is outside the plausible range [{lo:g}, {hi:g}] of profile "
            f"{profile.name!r}"
        )


def cmapss_kind(path: Path) -> tuple[str, str]:
    """('train' | 'test', 'fd001'): from the file's name, which says whether its units ran to failure."""
    match = _CMAPSS_NAME.match(path.name)
    if match is None:
        raise HistoryFileError(
            f"{path}: not named like a C-MAPSS file (train_FD001.txt, test_FD002.txt.gz ...); the name "
            "says whether the units ran to failure (train) or were cut short (test)"
        )
    return match.group(1).lower(), match.group(2).lower()


def read_cmapss(path: Path) -> dict[int, np.ndarray]:
    """unit -> [cycles, 26] (cmapss.COLUMNS), checked line by line: 26 numbers, whole unit and cycle,
    each unit's cycles 1, 2, 3 ... in order."""
    rows: list[list[float]] = []
    last: dict[int, int] = {}
    for number, line in _lines(path):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != len(COLUMNS):
            raise HistoryFileError(
                f"{path} line {number}: expected {len(COLUMNS)} numbers, got {len(fields)}"
            )
        try:
            values = [float(f) for f in fields]
        except ValueError:
            bad = next(f for f in fields if not _is_number(f))
            column = COLUMNS[fields.index(bad)]
            raise HistoryFileError(
                f"{path} line {number}, column {column}: {bad!r} is not a number"
            ) from None
        unit, cycle = values[0], values[1]
        if unit != int(unit) or unit < 1 or cycle != int(cycle) or cycle < 1:
            raise HistoryFileError(f"{path} line {number}: unit and cycle must be whole numbers >= 1")
        expected = last.get(int(unit), 0) + 1
        if int(cycle) != expected:
            raise HistoryFileError(
                f"{path} line {number}: unit {int(unit)} jumps to cycle {int(cycle)}, expected {expected}"
            )
        last[int(unit)] = int(cycle)
        rows.append(values)
    if not rows:
        raise HistoryFileError(f"{path}: no data lines")
    matrix = np.array(rows, dtype=np.float64)
    return {u: matrix[matrix[:, 0] == u] for u in sorted(last)}


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_rul(path: Path) -> list[float]:
    out: list[float] = []
    for number, line in _lines(path):
        text = line.strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            raise HistoryFileError(f"{path} line {number}: {text!r} is not a number of cycles") from None
        if value < 0 or value != int(value):
            raise HistoryFileError(f"{path} line {number}: RUL must be a whole number >= 0, got {text}")
        out.append(value)
    return out


def _first_outside(profile: EquipmentProfile, name: str, column: np.ndarray) -> int | None:
    lo, hi = profile.channels[name]
    outside = np.flatnonzero(~((column >= lo) & (column <= hi)))  # NaN is outside too
    return int(outside[0]) if outside.size else None


def cmapss_history(
    path: Path,
    profile: EquipmentProfile,
    recorded_at: datetime,
    *,
    prefix: str | None = None,
    rul_path: Path | None = None,
    start: datetime = DEFAULT_START,
    cycle: timedelta = DEFAULT_CYCLE,
) -> History:
    """Every unit of a C-MAPSS file, with a failure event for each unit whose failure is known."""
    kind, subset = cmapss_kind(path)
    if prefix is None:
        prefix = f"{subset}-" if kind == "train" else f"{subset}-test-"
    if not re.match(EQUIPMENT_ID_PATTERN, f"{prefix}000"):
        raise HistoryFileError(f"--prefix {prefix!r} makes equipment ids ingestion would refuse")
    if kind == "train" and rul_path is not None:
        raise HistoryFileError(f"{path}: training units run to failure, a RUL file is for test units")
    channels = COLUMNS[2:]
    unknown = [c for c in channels if c not in profile.channels]
    if unknown:
        raise HistoryFileError(f"{path}: profile {profile.name!r} has no channel(s) {', '.join(unknown)}")
    units = read_cmapss(path)
    ruls = read_rul(rul_path) if rul_path is not None else None
    if ruls is not None and len(ruls) != len(units):
        raise HistoryFileError(f"{rul_path}: {len(ruls)} RUL values for the {len(units)} units of {path}")
    step = np.timedelta64(int(cycle / timedelta(microseconds=1)), "us")
    origin = to_utc_micros(start)
    blocks, events = [], []
    for i, (unit, traj) in enumerate(units.items()):
        for j, name in enumerate(channels, start=2):
            row = _first_outside(profile, name, traj[:, j])
            if row is not None:
                where = f"{path} unit {unit} cycle {int(traj[row, 1])}"
                _check_range(profile, name, float(traj[row, j]), where)
        seq = traj[:, 1].astype(np.int64)
        eid = f"{prefix}{unit:03d}"
        values = {c: traj[:, j] for j, c in enumerate(channels, start=2)}
        blocks.append(Block(eid, profile.name, seq, origin + (seq - 1) * step, values))
        if kind == "train":
            failure_seq: int | None = int(seq[-1])
        else:
            failure_seq = None if ruls is None else int(seq[-1] + ruls[i])
        if failure_seq is not None:
            events.append(
                EquipmentEvent(
                    equipment_id=eid,
                    kind="failure",
                    seq=failure_seq,
                    timestamp=start + (failure_seq - 1) * cycle,
                    note=f"imported from {path.name}",
                    source="import",
                    recorded_at=recorded_at,
                )
            )
    return History(blocks, events)


_FIXED: Final = ("equipment_id", "seq", "timestamp", "event")


@dataclass
class _Machine:
    seq: list[int]
    stamps: list[np.datetime64]
    values: list[list[float]]
    lines: dict[int, int]  # seq -> line, to name the first copy of a repeated seq


def _parse_time(text: str, where: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise HistoryFileError(f"{where}: {text!r} is not an ISO 8601 time") from None
    if moment.utcoffset() is None:
        raise HistoryFileError(f"{where}: {text!r} has no time zone (add Z or +02:00)")
    return moment


def csv_history(
    path: Path,
    profile: EquipmentProfile,
    recorded_at: datetime,
    *,
    start: datetime = DEFAULT_START,
    cycle: timedelta = DEFAULT_CYCLE,
) -> History:
    """Every reading of a CSV file in Vigil's layout (module docstring), with its events."""
    lines = _lines(path)
    rows = csv.reader(line for _, line in lines)
    try:
        header = [h.strip() for h in next(rows)]
    except StopIteration:
        raise HistoryFileError(f"{path}: empty file") from None
    missing = [c for c in ("equipment_id", "seq") if c not in header]
    if missing:
        raise HistoryFileError(f"{path} header: missing column(s) {', '.join(missing)}")
    channels = [h for h in header if h not in _FIXED]
    unknown = [c for c in channels if c not in profile.channels]
    if unknown:
        raise HistoryFileError(
            f"{path} header: column(s) {', '.join(unknown)} are not channels of profile {profile.name!r}"
        )
    absent = [s for s in profile.required_channels if s not in channels]
    if absent:
        raise HistoryFileError(f"{path} header: profile {profile.name!r} needs column(s) {', '.join(absent)}")
    at = {name: i for i, name in enumerate(header)}
    machines: dict[str, _Machine] = {}
    events: list[EquipmentEvent] = []
    for line_number, row in enumerate(rows, start=2):
        if not any(cell.strip() for cell in row):
            continue
        where = f"{path} line {line_number}"
        if len(row) != len(header):
            raise HistoryFileError(f"{where}: {len(row)} fields, the header has {len(header)}")
        eid = row[at["equipment_id"]].strip()
        if not re.match(EQUIPMENT_ID_PATTERN, eid):
            raise HistoryFileError(f"{where}, column equipment_id: {eid!r} is not a valid equipment id")
        text = row[at["seq"]].strip()
        if not text.isdigit():
            raise HistoryFileError(f"{where}, column seq: {text!r} is not a whole number >= 0")
        seq = int(text)
        stamp = (
            _parse_time(row[at["timestamp"]].strip(), f"{where}, column timestamp")
            if "timestamp" in at and row[at["timestamp"]].strip()
            else start + seq * cycle
        )
        values: list[float] = []
        for name in channels:
            cell = row[at[name]].strip()
            if not cell:
                if name in profile.required_channels:
                    raise HistoryFileError(
                        f"{where}, column {name}: empty, and profile {profile.name!r} needs it"
                    )
                values.append(math.nan)
                continue
            try:
                value = float(cell)
            except ValueError:
                raise HistoryFileError(f"{where}, column {name}: {cell!r} is not a number") from None
            _check_range(profile, name, value, f"{where}, column {name}")
            values.append(value)
        machine = machines.setdefault(eid, _Machine([], [], [], {}))
        if seq in machine.lines:
            raise HistoryFileError(f"{where}: {eid} seq {seq} is already on line {machine.lines[seq]}")
        machine.lines[seq] = line_number
        machine.seq.append(seq)
        machine.stamps.append(to_utc_micros(stamp))
        machine.values.append(values)
        kind = row[at["event"]].strip() if "event" in at else ""
        if kind:
            if kind not in _EVENT_KINDS:
                raise HistoryFileError(
                    f"{where}, column event: {kind!r} is not one of {', '.join(sorted(_EVENT_KINDS))}"
                )
            events.append(
                EquipmentEvent(
                    equipment_id=eid,
                    kind=kind,  # type: ignore[arg-type]  # checked against EventKind just above
                    seq=seq,
                    timestamp=stamp,
                    note=f"imported from {path.name}",
                    source="import",
                    recorded_at=recorded_at,
                )
            )
    if not machines:
        raise HistoryFileError(f"{path}: no readings below the header")
    blocks = []
    for eid, m in machines.items():
        order = np.argsort(np.array(m.seq), kind="stable")
        matrix = np.array(m.values, dtype=np.float64).reshape(len(m.seq), len(channels))[order]
        blocks.append(
            Block(
                eid,
                profile.name,
                np.array(m.seq, dtype=np.int64)[order],
                np.array(m.stamps, dtype="datetime64[us]")[order],
                {name: matrix[:, j] for j, name in enumerate(channels)},
            )
        )
    return History(blocks, events)


# AI4I 2020 (data/ai4i2020/): its columns as the milling profile's channels, defined once with the
# loader training uses (apps/common/ai4i.py).
AI4I_CHANNELS: Final = ai4i.CHANNELS
AI4I_QUALITY: Final = ai4i.QUALITY
AI4I_MODES: Final = ai4i.FAILURE_TYPES


def ai4i_history(
    path: Path,
    profile: EquipmentProfile,
    recorded_at: datetime,
    *,
    equipment_id: str = "ai4i-mill",
    start: datetime = DEFAULT_START,
    cycle: timedelta = DEFAULT_CYCLE,
) -> History:
    """The AI4I 2020 file as one milling machine: seq = UDI, product quality as a channel, and a
    `failure` event at each row with `Machine failure` = 1 (its failure modes in the note; the file's
    label, not the OR of the modes, as data/ai4i2020/README.md explains)."""
    rows = csv.DictReader(line for _, line in _lines(path))
    needed = ["UDI", "Type", "Machine failure", *AI4I_CHANNELS.values(), *AI4I_MODES]
    missing = [c for c in needed if c not in (rows.fieldnames or [])]
    if missing:
        raise HistoryFileError(
            f"{path} header: not the AI4I 2020 file, missing column(s) {', '.join(missing)}"
        )
    seqs: list[int] = []
    values: list[list[float]] = []
    events: list[EquipmentEvent] = []
    channels = ["product_quality", *AI4I_CHANNELS]
    for line_number, row in enumerate(rows, start=2):
        where = f"{path} line {line_number}"
        try:
            seq = int(row["UDI"])
            quality = AI4I_QUALITY[row["Type"]]
            measured = [float(row[column]) for column in AI4I_CHANNELS.values()]
            failed = int(row["Machine failure"]) == 1
        except (KeyError, ValueError, TypeError) as exc:
            raise HistoryFileError(f"{where}: unreadable row ({exc})") from None
        for name, value in zip(channels, [quality, *measured], strict=True):
            _check_range(profile, name, value, f"{where}, column {name}")
        seqs.append(seq)
        values.append([quality, *measured])
        if failed:
            modes = [m for m in AI4I_MODES if row[m].strip() == "1"]
            events.append(
                EquipmentEvent(
                    equipment_id=equipment_id,
                    kind="failure",
                    seq=seq,
                    timestamp=start + seq * cycle,
                    note=f"failure modes: {', '.join(modes) or 'none given'}; imported from {path.name}",
                    source="import",
                    recorded_at=recorded_at,
                )
            )
    if not seqs:
        raise HistoryFileError(f"{path}: no rows below the header")
    seq_array = np.array(seqs, dtype=np.int64)
    matrix = np.array(values, dtype=np.float64)
    stamps = to_utc_micros(start) + seq_array * np.timedelta64(int(cycle / timedelta(microseconds=1)), "us")
    block = Block(
        equipment_id, profile.name, seq_array, stamps, {c: matrix[:, j] for j, c in enumerate(channels)}
    )
    return History([block], events)
