"""The LevelDB log format the managed export's files use: records in 32 KiB blocks.

Each block holds fragments, each behind a 7-byte header: the masked CRC32C of
the type byte and the data (4 bytes, little endian), the data's length (2) and
the type (1): FULL, or FIRST, MIDDLE..., LAST for a record cut across blocks. A
block's last 1-6 bytes, too few for a header, are zeros.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import IO, NoReturn

import google_crc32c

from mapper.errors import DumpFormatError

BLOCK = 32 * 1024
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
_HEADER = struct.Struct("<IHB")
_MASK_DELTA = 0xA282EAD8


def masked_crc(data: bytes) -> int:
    """LevelDB's masked CRC32C: a CRC stored in data hashes differently from the data."""
    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def read_records(
    raw: IO[bytes], where: str, start: int = 0, count: int | None = None
) -> Iterator[tuple[int, bytes]]:
    """Yield ``(offset, record)`` for each record from byte ``start`` (a record's first
    fragment), ``count`` records at most.

    Raises DumpFormatError naming ``where`` and the offset for a bad CRC, a
    truncated fragment, or fragments out of order.
    """
    reader = _BlockReader(raw, where, start)
    seen = 0
    while count is None or seen < count:
        record = reader.next_record()
        if record is None:
            return
        seen += 1
        yield record


class _BlockReader:
    def __init__(self, raw: IO[bytes], where: str, start: int):
        self.raw, self.where = raw, where
        self.buffer, self.pos, self.base = b"", 0, start
        if start:
            raw.seek(start)

    def _fill(self, need: int) -> bool:
        """Make ``need`` bytes available at ``pos``; False at a clean end of file."""
        while len(self.buffer) - self.pos < need:
            chunk = self.raw.read(max(1 << 20, need))
            if not chunk:
                return False
            self.buffer = self.buffer[self.pos :] + chunk
            self.base += self.pos
            self.pos = 0
        return True

    def _fragment(self) -> tuple[int, int, bytes] | None:
        """The next fragment as ``(offset, type, data)``; None at the end of the file."""
        while True:
            offset = self.base + self.pos
            left = BLOCK - offset % BLOCK
            if left < HEADER:  # the block's trailer: zeros, or the file ends here
                if not self._fill(left):
                    if len(self.buffer) - self.pos:
                        self._fail("truncated record header", offset)
                    return None
                self.pos += left
                continue
            if not self._fill(HEADER):
                if len(self.buffer) - self.pos:
                    self._fail("truncated record header", offset)
                return None
            crc, length, kind = _HEADER.unpack_from(self.buffer, self.pos)
            if kind == 0 and length == 0 and crc == 0:  # preallocated zeros: skip the block
                if not self._fill(left):
                    return None
                self.pos += left
                continue
            if HEADER + length > left:
                self._fail(f"record length {length} runs past its 32 KiB block", offset)
            if not self._fill(HEADER + length):
                self._fail(f"truncated record: {length} bytes announced", offset)
            start = self.pos + HEADER
            data = self.buffer[start : start + length]
            self.pos = start + length
            if masked_crc(bytes((kind,)) + data) != crc:
                self._fail("bad CRC: the record is corrupt", offset)
            return offset, kind, data

    def next_record(self) -> tuple[int, bytes] | None:
        fragment = self._fragment()
        if fragment is None:
            return None
        offset, kind, data = fragment
        if kind == FULL:
            return offset, data
        if kind != FIRST:
            self._fail(f"fragment of type {kind} where a record should start", offset)
        pieces = [data]
        while True:
            following = self._fragment()
            if following is None:
                self._fail("truncated record: the file ends inside it", offset)
            at, kind, data = following
            if kind not in (MIDDLE, LAST):
                self._fail(f"fragment of type {kind} inside a record", at)
            pieces.append(data)
            if kind == LAST:
                return offset, b"".join(pieces)

    def _fail(self, message: str, offset: int) -> NoReturn:
        raise DumpFormatError(f"{message} (offset {offset})", self.where)


class RecordWriter:
    """Writes records to a LevelDB log file, cutting them across 32 KiB blocks."""

    def __init__(self, sink: IO[bytes]):
        self.sink, self.offset = sink, 0

    def write(self, record: bytes) -> None:
        view, first = memoryview(record), True
        while True:
            left = BLOCK - self.offset % BLOCK
            if left < HEADER:
                self._put(b"\0" * left)
                left = BLOCK
            size = min(len(view), left - HEADER)
            last = size == len(view)
            kind = (FULL if last else FIRST) if first else (LAST if last else MIDDLE)
            data = bytes(view[:size])
            self._put(_HEADER.pack(masked_crc(bytes((kind,)) + data), size, kind) + data)
            view, first = view[size:], False
            if last:
                return

    def _put(self, data: bytes) -> None:
        self.sink.write(data)
        self.offset += len(data)
