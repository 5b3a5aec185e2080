"""Part files: gzip JSON lines of entities, with their counts and checksums."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import urllib.parse
import zlib
from collections.abc import Iterable, Iterator
from typing import IO

from google.protobuf.message import Message

from mapper.dump.codec import MAX_LINE_BYTES, decode_entity, encode_entity
from mapper.dump.files import DumpLocation, DumpStore, check_relpath, open_dump_store
from mapper.errors import DumpFormatError

PART_SUFFIX = ".jsonl.gz"

# -- part files ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PartInfo:
    """What the manifest records about one part file."""

    path: str
    count: int
    sha256: str
    bytes: int
    kinds: tuple[str, ...] = ()
    namespaces: tuple[str, ...] = ()


def part_relpath(kind: str, shard: int, batch: int, namespace: str = "") -> str:
    """Where one export batch writes: ``{namespace}/{kind}/part-{shard}-{batch}.jsonl.gz``.

    A batch's parts are numbered from the batch's number, so a replayed batch
    rewrites its own files. The default namespace is spelled ``~default`` (``~`` cannot occur in
    a namespace name); names are percent-encoded into safe file names.
    """
    ns_dir = _safe_name(namespace) if namespace else "~default"
    return f"{ns_dir}/{_safe_name(kind)}/part-{shard:05d}-{batch:06d}{PART_SUFFIX}"


def _safe_name(name: str) -> str:
    quoted = urllib.parse.quote(name, safe="")
    if quoted.startswith("."):  # no hidden names, no "." or ".."
        quoted = "%2E" + quoted[1:]
    if not quoted or len(quoted) > 120:  # file names are limited to 255 bytes
        quoted = f"{quoted[:100]}~{hashlib.sha256(name.encode()).hexdigest()[:16]}"
    return quoted


class _Hashing:
    """Wraps a file, hashing every byte that passes through in either direction.

    Reading more than ``limit`` bytes (the size the manifest records) raises
    DumpFormatError naming ``where``.
    """

    def __init__(self, raw: IO[bytes], limit: int | None = None, where: str | None = None):
        self.raw, self.sha, self.size = raw, hashlib.sha256(), 0
        self.limit, self.where = limit, where

    def _seen(self, data: bytes) -> bytes:
        self.sha.update(data)
        self.size += len(data)
        if self.limit is not None and self.size > self.limit:
            message = f"more bytes than the manifest's {self.limit}"
            raise DumpFormatError(message, self.where)
        return data

    def write(self, data: bytes) -> int:
        return self.raw.write(self._seen(data))

    def read(self, n: int = -1) -> bytes:
        return self._seen(self.raw.read(n))

    def flush(self) -> None:
        pass  # the store decides when bytes are durable


@dataclasses.dataclass
class _Tally:
    count: int = 0
    kinds: set[str] = dataclasses.field(default_factory=set)
    namespaces: set[str] = dataclasses.field(default_factory=set)

    def add(self, pb: Message) -> Message:
        self.count += 1
        if pb.key.path:
            self.kinds.add(pb.key.path[-1].kind)
            self.namespaces.add(pb.key.partition_id.namespace_id)
        return pb

    def info(self, path: str, stream: _Hashing) -> PartInfo:
        kinds, namespaces = tuple(sorted(self.kinds)), tuple(sorted(self.namespaces))
        return PartInfo(path, self.count, stream.sha.hexdigest(), stream.size, kinds, namespaces)


def write_part(directory: DumpLocation, relpath: str, entities: Iterable[Message]) -> PartInfo:
    """Write ``entities`` as the part ``relpath``, replacing it whole if it exists.

    The gzip header carries no name and no time, so equal entities give equal
    bytes and an equal checksum however often a batch is replayed.
    """
    store, tally = open_dump_store(directory), _Tally()
    with store.open_write(check_relpath(relpath)) as raw:
        sink = _Hashing(raw)
        with gzip.GzipFile("", "wb", 6, sink, mtime=0) as gz:  # type: ignore[call-overload]
            batch: list[bytes] = []
            for pb in entities:
                batch += (encode_entity(tally.add(pb)), b"\n")
                if len(batch) >= 512:
                    gz.write(b"".join(batch))
                    batch.clear()
            gz.write(b"".join(batch))
    return tally.info(relpath, sink)


def read_part(
    directory: DumpLocation, relpath: str, expected: PartInfo | None = None
) -> Iterator[Message]:
    """Stream the entities of part ``relpath``, then check it against ``expected``.

    Entities are yielded as they are read: a checksum mismatch is known only at
    the end, and raises then. Reading stops as soon as the file holds more bytes
    or entities than ``expected`` says (a gzip stream that inflates without end
    raises at once). Run :func:`validate_dump` before acting on a dump you have
    not checked.
    """
    reader = _PartReader(open_dump_store(directory), relpath, expected)
    yield from reader
    if expected is not None:
        for field in ("sha256", "bytes", "count"):
            want, got = getattr(expected, field), getattr(reader.info, field)
            if want != got:
                message = f"{field} mismatch: manifest says {want!r}, file has {got!r}"
                raise DumpFormatError(message, reader.where)


def scan_part(directory: DumpLocation, relpath: str) -> PartInfo:
    """Read part ``relpath`` whole and return what a manifest should record about it."""
    reader = _PartReader(open_dump_store(directory), relpath)
    for _ in reader:
        pass
    return reader.info


class _PartReader:
    """Iterates a part's entities; ``info`` describes the file once iteration ends.

    With ``expected`` (what the manifest says), reading stops with DumpFormatError
    as soon as the file holds more bytes or more entities than that.
    """

    def __init__(self, store: DumpStore, relpath: str, expected: PartInfo | None = None):
        self.store, self.relpath = store, check_relpath(relpath)
        self.where = store.location(relpath)
        self.info = PartInfo(relpath, 0, "", 0)
        self.expected = expected

    def __iter__(self) -> Iterator[Message]:
        try:
            raw = self.store.open_read(self.relpath)
        except FileNotFoundError as e:
            raise DumpFormatError("incomplete dump: part file is missing", self.where) from e
        with raw:
            limit = None if self.expected is None else self.expected.bytes
            source, tally = _Hashing(raw, limit, self.where), _Tally()
            try:
                with gzip.GzipFile(fileobj=source, mode="rb") as gz:  # type: ignore[call-overload]
                    for entity in self._entities(gz):
                        self._check_count(tally.count + 1)
                        yield tally.add(entity)
                while source.read(1 << 16):  # hash any bytes after the gzip stream too
                    pass
                if source.size == 0:  # gzip reads an empty file as empty data
                    raise EOFError("the file is empty")
            except (EOFError, gzip.BadGzipFile, zlib.error) as e:
                raise DumpFormatError(f"truncated or corrupt gzip data: {e}", self.where) from e
        self.info = tally.info(self.relpath, source)

    def _check_count(self, count: int) -> None:
        if self.expected is not None and count > self.expected.count:
            message = f"more entities than the manifest's count of {self.expected.count}"
            raise DumpFormatError(message, self.where, count)

    def _entities(self, gz: gzip.GzipFile) -> Iterator[Message]:
        lineno = 0
        while line := gz.readline(MAX_LINE_BYTES + 1):
            lineno += 1
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                raise DumpFormatError(f"line over {MAX_LINE_BYTES} bytes", self.where, lineno)
            yield decode_entity(line.removesuffix(b"\n"), self.where, lineno)
