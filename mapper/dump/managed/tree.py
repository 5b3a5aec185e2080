"""A managed export as a dump: its table of contents, its parts, and writing one.

A managed export is read through the same :class:`Manifest` as mapper's own
dump. Its parts are runs of at most :data:`CHUNK` records of one output file,
named ``{folder}/{file}@{offset}`` (the byte offset of the run's first record),
so an import batch holds a bounded number of entities however large the files
are. The table of contents is built by one pass over the files (framing, CRCs
and keys only), and checked against the counts and sizes the metadata records.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import Iterable, Iterator
from typing import IO, Any

from google.protobuf.message import DecodeError

from mapper.dump.files import DumpLocation, DumpStore, open_dump_store
from mapper.dump.managed import metadata as meta
from mapper.dump.managed.convert import ConversionError, parse_entity, serialize_entity
from mapper.dump.managed.entity_v3 import _MESSAGES, declare
from mapper.dump.managed.leveldb import BLOCK, HEADER, RecordWriter, read_records
from mapper.dump.manifest import MANIFEST, Manifest
from mapper.dump.parts import PartInfo
from mapper.errors import DumpFormatError

FORMAT_NAME = "datastore-managed-export"
#: Records a part holds at most (mapper's export writes 500 entities a part too).
CHUNK = 500
#: A metadata file larger than this is not one (refused unread).
MAX_METADATA_BYTES = 64 * 1024 * 1024

# The key alone: the table of contents needs kinds and namespaces, not the values.
_KeyOnly = declare(
    "mapper_managed_key",
    {
        "KeyOnly": [("key", 13, 11, 1, "Reference")],
        **{name: _MESSAGES[name] for name in ("Reference", "Path", "Path.Element")},
    },
)["KeyOnly"]


def is_managed(location: DumpLocation) -> bool:
    """Whether ``location`` names a managed export's overall metadata file."""
    return isinstance(location, str) and location.endswith(meta.OVERALL_SUFFIX)


def find_overall(location: DumpLocation) -> str | None:
    """The overall metadata file ``location`` names or holds (None: not a managed export).

    A folder is a managed export when it holds no ``manifest.json`` and exactly one
    ``*.overall_export_metadata`` file at its top.
    """
    if isinstance(location, str) and is_managed(location):
        return location
    store = open_dump_store(location)
    if store.exists(MANIFEST):
        return None
    try:
        names = [n for n in store.list_files() if "/" not in n and is_managed(n)]
    except FileNotFoundError:
        return None
    if len(names) > 1:
        raise DumpFormatError(
            f"several managed exports here ({names!r}): name one .overall_export_metadata file",
            store.location(),
        )
    return store.location(names[0]) if names else None


def _split(overall: str) -> tuple[DumpStore, str]:
    folder, _, name = overall.rpartition("/")
    return open_dump_store(folder or "."), name


def _read_small(store: DumpStore, relpath: str, what: str) -> bytes:
    try:
        with store.open_read(relpath) as f:
            data: bytes = f.read(MAX_METADATA_BYTES + 1)
    except FileNotFoundError as e:
        raise DumpFormatError(
            f"incomplete managed export: no {what}", store.location(relpath)
        ) from e
    if len(data) > MAX_METADATA_BYTES:
        raise DumpFormatError(
            f"over {MAX_METADATA_BYTES} bytes: not a {what}", store.location(relpath)
        )
    return data


def read_overall(overall: str) -> tuple[DumpStore, Any]:
    """The export's folder store and its overall metadata message, checked."""
    store, name = _split(overall)
    where = store.location(name)
    records = [
        r for _, r in read_records(_bytes_io(_read_small(store, name, "overall metadata")), where)
    ]
    if len(records) != 2 or records[0] != meta.FORMAT_MARKER:
        marker = records[0][:16] if records else None
        raise DumpFormatError(
            f"not a managed export's overall metadata: expected the marker {meta.FORMAT_MARKER!r} "
            f"and one table, got {len(records)} records starting {marker!r}",
            where,
        )
    try:
        return store, meta.Overall.FromString(records[1])
    except DecodeError as e:
        raise DumpFormatError(f"overall metadata is not a table of folders: {e}", where) from e


def _bytes_io(data: bytes) -> IO[bytes]:
    return io.BytesIO(data)


def output_files(store: DumpStore, folder: Any, where: str) -> list[str]:
    """The output files a folder's metadata lists, relative to the export's folder."""
    path = folder.metadata_path
    base = path.rpartition("/")[0]
    if not path.endswith(meta.FOLDER_SUFFIX) or not base:
        raise DumpFormatError(f"a folder's metadata path is {path!r}", where)
    try:
        listed = meta.FolderMetadata.FromString(_read_small(store, path, "folder metadata"))
    except DecodeError as e:
        raise DumpFormatError(f"not a folder's export metadata: {e}", store.location(path)) from e
    files = [f"{base}/{output.file}" for output in listed.output]
    if any(not output.file or "/" in output.file for output in listed.output):
        raise DumpFormatError("an output file name is empty or a path", store.location(path))
    return files


@dataclasses.dataclass
class _Chunk:
    path: str
    offset: int
    end: int = 0
    count: int = 0
    sha: Any = dataclasses.field(default_factory=hashlib.sha256)
    kinds: set[str] = dataclasses.field(default_factory=set)
    namespaces: set[str] = dataclasses.field(default_factory=set)

    def info(self) -> PartInfo:
        kinds, namespaces = tuple(sorted(self.kinds)), tuple(sorted(self.namespaces))
        return PartInfo(
            f"{self.path}@{self.offset}",
            self.count,
            self.sha.hexdigest(),
            self.end - self.offset,
            kinds,
            namespaces,
        )


def read_managed_manifest(overall: str) -> Manifest:
    """The table of contents of a managed export: one pass over framing, CRCs and keys.

    Refuses (naming the file, and the offset for a record) metadata that does not
    parse, an output file that is missing or corrupt, and a folder whose files hold
    another number of entities or bytes than the overall metadata records.
    """
    store, table = read_overall(overall)
    where = store.location(overall.rpartition("/")[2])
    parts: list[PartInfo] = []
    partition: list[tuple[str, str]] = []
    for folder in table.folder:
        count = size = 0
        for path in output_files(store, folder, where):
            for chunk in _scan(store, path, partition):
                parts.append(chunk.info())
                count += chunk.count
            size += _size(store, path)
        if (count, size) != (folder.count, folder.bytes):
            raise DumpFormatError(
                f"the metadata says {folder.metadata_path!r} holds {folder.count} entities in "
                f"{folder.bytes} bytes; its files hold {count} in {size}",
                where,
            )
    project, database = partition[0] if partition else ("", "")
    manifest = Manifest.build(project, database, parts, metadata={"managed_export": where})
    return dataclasses.replace(manifest, format=FORMAT_NAME)


def _size(store: DumpStore, path: str) -> int:
    with store.open_read(path) as f:
        return f.seek(0, 2)


def _scan(store: DumpStore, path: str, partition: list[tuple[str, str]]) -> Iterator[_Chunk]:
    where = store.location(path)
    try:
        raw = store.open_read(path)
    except FileNotFoundError as e:
        raise DumpFormatError("incomplete managed export: output file is missing", where) from e
    chunk = None
    with raw:
        for offset, record in read_records(raw, where):
            if chunk is None:
                chunk = _Chunk(path, offset)
            try:
                key = _KeyOnly.FromString(record).key
            except DecodeError as e:
                raise DumpFormatError(f"not an EntityProto (offset {offset}): {e}", where) from e
            if key.path.element:
                chunk.kinds.add(key.path.element[-1].type)
            chunk.namespaces.add(key.name_space)
            if not partition:
                partition.append((key.app.rpartition("~")[2], key.database_id))
            chunk.sha.update(record)
            chunk.count += 1
            chunk.end = _record_end(offset, len(record))
            if chunk.count == CHUNK:
                yield chunk
                chunk = None
    if chunk is not None:
        yield chunk


def _record_end(offset: int, length: int) -> int:
    """The offset after a record of ``length`` bytes starting at ``offset`` (headers and
    block trailers included), as the writer lays it out."""
    position, left_data = offset, length
    while True:
        left = BLOCK - position % BLOCK
        if left < HEADER:
            position += left
            continue
        size = min(left_data, left - HEADER)
        position += HEADER + size
        left_data -= size
        if left_data == 0:
            return position


def read_managed_part(
    overall: str, relpath: str, expected: PartInfo | None = None
) -> Iterator[Any]:
    """Stream the v1 entities of the part ``relpath`` (``{file}@{offset}``).

    With ``expected``, stops at its count and checks the records' checksum then;
    a run shorter than expected is refused.
    """
    for _offset, entity, _where in read_managed_records(overall, relpath, expected):
        yield entity


def read_managed_records(
    overall: str, relpath: str, expected: PartInfo | None = None
) -> Iterator[tuple[int, Any, str]]:
    """``(offset, entity, file)`` for each record of a part; see :func:`read_managed_part`."""
    store, _ = _split(overall)
    path, _, start = relpath.rpartition("@")
    if not path or not start.isdigit():
        raise DumpFormatError(f"not a managed export part: {relpath!r}", store.location())
    where = store.location(path)
    try:
        raw = store.open_read(path)
    except FileNotFoundError as e:
        raise DumpFormatError("incomplete managed export: output file is missing", where) from e
    count = None if expected is None else expected.count
    sha, seen = hashlib.sha256(), 0
    with raw:
        for offset, record in read_records(raw, where, int(start), count):
            sha.update(record)
            seen += 1
            try:
                entity = parse_entity(record)
            except ConversionError as e:
                raise DumpFormatError(f"{e} (offset {offset})", where) from e
            yield offset, entity, where
    if expected is not None and (seen, sha.hexdigest()) != (expected.count, expected.sha256):
        raise DumpFormatError(
            f"the part at offset {start} changed since it was checked: {seen} records of "
            f"{expected.count}, or other bytes",
            where,
        )


# -- writing ------------------------------------------------------------------


def output_relpath(kind: str, namespace: str, shard: int, batch: int) -> str:
    """Where one export batch writes its records: ``{folder}/output-{shard}-{batch}``."""
    return f"{meta.folder_name(kind, namespace)}/output-{shard:05d}-{batch:06d}"


def write_output(location: DumpLocation, relpath: str, entities: Iterable[Any]) -> PartInfo:
    """Write ``entities`` as the output file ``relpath`` (replaced whole)."""
    store = open_dump_store(location)
    chunk = _Chunk(relpath, 0)
    with store.open_write(relpath) as sink:
        writer = RecordWriter(sink)
        for entity in entities:
            record = serialize_entity(entity)
            writer.write(record)
            chunk.count += 1
            if entity.key.path:
                chunk.kinds.add(entity.key.path[-1].kind)
                chunk.namespaces.add(entity.key.partition_id.namespace_id)
            chunk.sha.update(record)
        chunk.end = writer.offset
    info = chunk.info()
    return dataclasses.replace(info, path=relpath)


def write_metadata(location: DumpLocation, stamp: str, outputs: Iterable[PartInfo]) -> str:
    """Write the folders' metadata and then the overall file (last, as a manifest);
    returns the overall file's location, which an import reads."""
    store = open_dump_store(location)
    folders: dict[str, list[PartInfo]] = {}
    for info in outputs:
        folders.setdefault(info.path.rpartition("/")[0], []).append(info)
    table = meta.Overall()
    for folder_path, infos in sorted(folders.items()):
        kind, namespace = _selection(folder_path)
        entry = meta.folder(
            kind, namespace, sum(i.count for i in infos), sum(i.bytes for i in infos)
        )
        listing = meta.FolderMetadata()
        listing.run.stamp = stamp
        for info in sorted(infos, key=lambda i: i.path):
            listing.output.add(kind=kind, file=info.path.rpartition("/")[2])
        with store.open_write(entry.metadata_path) as f:
            f.write(listing.SerializeToString())
        table.folder.append(entry)
    name = f"{stamp}{meta.OVERALL_SUFFIX}"
    with store.open_write(name) as f:
        writer = RecordWriter(f)
        writer.write(meta.FORMAT_MARKER)
        writer.write(table.SerializeToString())
    return store.location(name)


def _selection(folder_path: str) -> tuple[str, str]:
    ns_part, _, kind_part = folder_path.partition("/")
    namespace = "" if ns_part == "default_namespace" else ns_part.removeprefix("namespace_")
    return kind_part.removeprefix("kind_"), namespace
