"""Which sequence numbers a machine has applied: tells a redelivery from a reading that never got in.

Readings are applied in seq order. A reading whose seq is at or below the last applied one is either
a redelivery (it was applied: drop it, count it as a duplicate) or a reading that was never applied
(lost earlier, or sent out of order): that one must not be dropped as a "duplicate" in silence: it is
placed in order if it falls inside the current window, and answered `too_late` explicitly if older.
Telling the two apart needs a record of which seqs were applied;
a bitmap over the last `APPLIED_HORIZON` seqs keeps that compact (128 bytes) and bounded.

A seq far ahead of the last one is refused `too_far` rather than applied: once applied, every normal
reading after it would be older, so one mistyped or hostile seq would silence the machine for good.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from apps.common.contracts import Reading

APPLIED_HORIZON: Final = 1024  # seqs below last_seq whose applied/not-applied status is remembered
# How far a seq may jump ahead of the machine's last one (a device that skipped readings, a gateway's
# counter after a restart); the first reading of a machine may start anywhere.
DEFAULT_MAX_SEQ_JUMP: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class SeqSplit:
    fresh: list[Reading]  # new readings, in seq order, each seq once
    duplicates: int  # already applied (or repeated within the batch)
    late: list[Reading]  # never applied, older than what has been applied since: placed or too late
    too_far: list[Reading] = field(default_factory=list)  # jump further ahead than allowed: refused


@dataclass(slots=True)
class SequenceTracker:
    last_seq: int = -1
    # Bit i set = seq (last_seq - i) was applied; bits beyond the horizon are dropped.
    applied: int = field(default=0)

    def was_applied(self, seq: int) -> bool | None:
        """True/False within the horizon, None when the seq is too old to know."""
        if seq > self.last_seq:
            return False
        offset = self.last_seq - seq
        if offset >= APPLIED_HORIZON:
            return None
        return bool(self.applied >> offset & 1)

    def split(self, readings: Iterable[Reading], max_jump: int = DEFAULT_MAX_SEQ_JUMP) -> SeqSplit:
        """Sort a batch into fresh, duplicate, too-late and too-far readings; does not advance `last_seq`.

        A fresh seq may be at most `max_jump` ahead of the one before it (applied, or fresh in this batch).
        """
        fresh: list[Reading] = []
        late: list[Reading] = []
        too_far: list[Reading] = []
        duplicates = 0
        last = self.last_seq
        for reading in sorted(readings, key=lambda r: r.seq):
            if reading.seq > last and last >= 0 and reading.seq - last > max_jump:
                too_far.append(reading)
            elif reading.seq > last:
                fresh.append(reading)
                last = reading.seq
            elif reading.seq <= self.last_seq and self.was_applied(reading.seq) is False:
                if late and late[-1].seq == reading.seq:
                    duplicates += 1
                else:
                    late.append(reading)
            else:
                # Applied before, older than the horizon (far older than any retry window), or a
                # repeat of a seq earlier in this same batch.
                duplicates += 1
        return SeqSplit(fresh, duplicates, late, too_far)

    def mark_applied(self, seq: int) -> None:
        if seq <= self.last_seq:
            raise ValueError(f"seq {seq} is not after last applied seq {self.last_seq}")
        shift = seq - self.last_seq
        mask = (1 << APPLIED_HORIZON) - 1
        self.applied = ((self.applied << shift) | 1) & mask if shift < APPLIED_HORIZON else 1
        self.last_seq = seq

    def mark_late(self, seq: int) -> None:
        """A seq below `last_seq` that was never applied has now been placed."""
        if self.was_applied(seq) is not False or seq > self.last_seq:
            raise ValueError(f"seq {seq} is not a never-applied seq within the horizon")
        self.applied |= 1 << (self.last_seq - seq)

    def applied_after(self, seq: int) -> int:
        """How many seqs above `seq` were applied (those beyond the horizon taken as all applied)."""
        span = self.last_seq - seq
        if span <= 0:
            return 0
        known = min(span, APPLIED_HORIZON)
        return (self.applied & ((1 << known) - 1)).bit_count() + (span - known)

    def to_dict(self) -> dict[str, object]:
        return {"last_seq": self.last_seq, "applied": format(self.applied, "x")}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> SequenceTracker:
        last = int(data["last_seq"])  # type: ignore[call-overload]
        bits = data.get("applied")
        if bits is None:  # state written before the bitmap existed: assume a gap-free history
            return cls(last, (1 << min(last + 1, APPLIED_HORIZON)) - 1 if last >= 0 else 0)
        return cls(last, int(str(bits), 16))
