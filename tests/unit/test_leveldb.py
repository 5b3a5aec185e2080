"""The LevelDB log framing of managed exports: records cut across 32 KiB blocks and read back."""

from __future__ import annotations

import io
import os
import struct

import pytest

from mapper.dump.managed import leveldb
from mapper.dump.managed.leveldb import BLOCK, FIRST, FULL, HEADER, LAST, MIDDLE, RecordWriter
from mapper.errors import DumpFormatError


def written(records):
    sink = io.BytesIO()
    writer = RecordWriter(sink)
    for record in records:
        writer.write(record)
    assert writer.offset == len(sink.getvalue())
    return sink.getvalue()


def fragments(data):
    """``(offset, type, length)`` of every fragment, walked by the format's rules alone."""
    found, position = [], 0
    while position < len(data):
        left = BLOCK - position % BLOCK
        if left < HEADER:
            assert data[position : position + left] == b"\0" * left  # the block's trailer
            position += left
            continue
        _crc, length, kind = struct.unpack_from("<IHB", data, position)
        found.append((position, kind, length))
        position += HEADER + length
    return found


def read_back(data, start=0, count=None):
    return list(leveldb.read_records(io.BytesIO(data), "mem", start, count))


def test_a_record_over_32_kib_spans_blocks_as_first_middle_last_and_reads_back_whole():
    big = os.urandom(3 * BLOCK + 1000)
    data = written([b"before", big, b"after"])
    kinds = [kind for _, kind, _ in fragments(data)]
    assert kinds == [FULL, FIRST, MIDDLE, MIDDLE, LAST, FULL]
    assert all(length <= BLOCK - HEADER for _, _, length in fragments(data))
    records = read_back(data)
    assert [record for _, record in records] == [b"before", big, b"after"]
    # Each record's offset is where its first fragment starts, so a part can begin at it.
    assert [offset for offset, _ in records] == [0, 13, fragments(data)[-1][0]]
    assert read_back(data, start=13, count=1) == [(13, big)]


@pytest.mark.parametrize("spare", [0, 1, 6, HEADER])
def test_a_record_ending_near_a_block_edge_leaves_the_next_one_readable(spare):
    """0-6 bytes left: a zero trailer; exactly 7: an empty FIRST fragment, as LevelDB writes."""
    first = os.urandom(BLOCK - HEADER - spare)
    second = os.urandom(BLOCK + 10)
    data = written([first, second])
    records = read_back(data)
    assert [record for _, record in records] == [first, second]
    if spare == HEADER:
        assert fragments(data)[1] == (BLOCK - HEADER, FIRST, 0)
    assert read_back(data, start=records[1][0]) == [records[1]]


def test_a_corrupt_middle_fragment_is_refused_naming_its_offset():
    data = bytearray(written([b"x" * (2 * BLOCK)]))
    data[BLOCK + HEADER + 5] ^= 0xFF  # inside the second fragment's data
    with pytest.raises(DumpFormatError) as refused:
        read_back(bytes(data))
    assert f"bad CRC: the record is corrupt (offset {BLOCK})" in str(refused.value)
