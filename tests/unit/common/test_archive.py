"""The archive's format: Parquet chunks per machine and day, content-named, merged by (machine, seq)."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from apps.common.archive import (
    ArchiveFormatError,
    Block,
    blocks_from_readings,
    chunk_path,
    decode_chunk,
    encode_chunk,
    event_path,
    merge_blocks,
    split_by_day,
)
from apps.common.archivestore import archive_paths
from apps.common.contracts import EquipmentEvent, Reading

T0 = datetime(2024, 3, 1, 22, 0, tzinfo=UTC)


def reading(seq: int, eq: str = "m1", hours: float = 0.0, **values: float) -> Reading:
    return Reading(
        equipment_id=eq,
        profile="turbofan",
        timestamp=T0 + timedelta(hours=hours),
        seq=seq,
        values=values or {"a": float(seq), "b": 10.0 * seq},
    )


def test_readings_become_one_block_per_machine_with_a_column_per_channel() -> None:
    blocks = blocks_from_readings([reading(2, "m1"), reading(0, "m2"), reading(1, "m1", c=5.0)])
    assert [b.equipment_id for b in blocks] == ["m1", "m2"]
    m1 = blocks[0]
    assert m1.seq.tolist() == [2, 1] and sorted(m1.values) == ["a", "b", "c"]
    assert np.isnan(m1.values["a"][1]) and m1.values["c"].tolist()[1] == 5.0
    assert m1.timestamp[0] == np.datetime64("2024-03-01T22:00:00", "us")


def test_a_chunk_round_trips_through_parquet_with_its_schema_and_source() -> None:
    [block] = blocks_from_readings([reading(s, c=1.5) if s == 1 else reading(s) for s in range(3)])
    data = encode_chunk(block, "ingestion")
    back = decode_chunk(data)
    assert back.equipment_id == "m1" and back.profile == "turbofan"
    np.testing.assert_array_equal(back.seq, block.seq)
    np.testing.assert_array_equal(back.timestamp, block.timestamp)
    np.testing.assert_array_equal(back.values["a"], block.values["a"])
    assert np.isnan(back.values["c"][0]) and back.values["c"][1] == 1.5  # a channel not sent is null
    table = pq.read_table(io.BytesIO(data))
    assert str(table.schema.field("timestamp").type) == "timestamp[us, tz=UTC]"
    assert table.schema.metadata[b"vigil.source"] == b"ingestion"


def test_chunks_are_cut_per_utc_day_sorted_unique_and_named_by_content() -> None:
    readings = [reading(s, hours=s) for s in (5, 1, 0, 3, 1)]  # 22:00 + s h: day 1 for 0, 1; day 2 after
    [block] = blocks_from_readings(readings)
    days = split_by_day(block)
    assert [d.seq.tolist() for d in days] == [[0, 1], [3, 5]]  # the second copy of seq 1 is gone
    first = chunk_path(days[0])
    assert first.startswith("readings/m1/2024-03-01/000000000000-000000000001-")
    assert first.endswith(".parquet")
    assert chunk_path(days[1]).startswith("readings/m1/2024-03-02/000000000003-000000000005-")
    assert chunk_path(split_by_day(block)[0]) == first  # same readings, same name: a retry overwrites
    changed = blocks_from_readings([reading(0, a=9.0, b=0.0), reading(1)])[0]
    assert chunk_path(changed) != first


def test_merge_keeps_one_reading_per_seq_the_first_copy_in_order() -> None:
    one = blocks_from_readings([reading(0), reading(1, a=100.0, b=1.0)])[0]
    two = blocks_from_readings([reading(1, a=-1.0, b=-1.0), reading(2), reading(0, "m2")])
    merged = merge_blocks([one, *two])
    assert sorted(merged) == ["m1", "m2"]
    assert merged["m1"].seq.tolist() == [0, 1, 2]
    assert merged["m1"].values["a"].tolist() == [0.0, 100.0, 2.0]
    assert merged["m1"].matrix(["b", "zz"])[:, 0].tolist() == [0.0, 1.0, 20.0]
    assert np.isnan(merged["m1"].matrix(["zz"])).all()


def test_foreign_or_damaged_chunks_are_refused_by_name() -> None:
    with pytest.raises(ArchiveFormatError, match="x.parquet: not a Parquet file"):
        decode_chunk(b"PAR1 but not really", "x.parquet")
    out = io.BytesIO()
    pq.write_table(pa.table({"seq": [1]}), out)
    with pytest.raises(ArchiveFormatError, match="not a Vigil archive chunk"):
        decode_chunk(out.getvalue(), "y")
    with pytest.raises(ValueError, match="one entry per reading"):
        Block("m", "p", np.arange(3), np.arange(2).astype("datetime64[us]"))


def test_event_files_are_one_per_machine_seq_and_kind() -> None:
    event = EquipmentEvent(
        equipment_id="m1", kind="failure", seq=192, timestamp=T0, source="api", recorded_at=T0
    )
    assert event_path(event) == "events/m1/000000000192-failure.json"


def test_listings_of_a_folder_or_a_bucket_become_archive_paths() -> None:
    local = [
        "/srv/readings/.localdapr/archive/readings/readings/2024-03-01/1-2-x.parquet",
        "/srv/readings/.localdapr/archive/readings/m1/2024-03-01/0-1-y.parquet",
        "/srv/readings/.localdapr/archive/events/m1/000000000001-failure.json",  # not a chunk
    ]
    assert archive_paths(local, "readings") == [
        "readings/m1/2024-03-01/0-1-y.parquet",
        "readings/readings/2024-03-01/1-2-x.parquet",  # a machine may be called "readings"
    ]
    assert archive_paths(local, "events") == ["events/m1/000000000001-failure.json"]
    assert archive_paths(None, "events") == []  # localstorage: nothing there
    s3 = {"Contents": [{"Key": "events/m2/000000000005-replaced.json", "Size": 10}], "IsTruncated": False}
    assert archive_paths(s3, "events") == ["events/m2/000000000005-replaced.json"]
