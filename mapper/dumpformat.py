"""The dump format: gzip JSON-lines part files of Datastore entities, and a manifest."""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import gzip
import hashlib
import json
import os
import re
import shutil
import urllib.parse
import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import IO, Any, TypeAlias

from google.cloud.datastore_v1.types import entity as entity_types
from google.protobuf import json_format
from google.protobuf.message import Message

from mapper.errors import ConfigurationError, DumpFormatError

FORMAT_NAME = "mapper-dump"
#: Readers accept every version from 1 up to this one and refuse newer ones.
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PART_SUFFIX = ".jsonl.gz"
#: Datastore's limit on one entity (1 MiB - 4), checked against the protobuf size.
MAX_ENTITY_BYTES = 1_048_572
#: Datastore's limit on one key (6 KiB), checked against the protobuf size.
MAX_KEY_BYTES = 6_144
#: No entity within the size limit needs a longer JSON line; longer ones are refused unread.
MAX_LINE_BYTES = 16 * 1024 * 1024

#: The raw (upb) protobuf class of ``google.datastore.v1.Entity``.
Entity = entity_types.Entity.pb()

_RESERVED_KIND = re.compile(r"__.*__", re.DOTALL)
_GCS_CHUNK = 8 * 1024 * 1024


# -- one entity per line -------------------------------------------------------


def encode_entity(pb: Message) -> bytes:
    """One dump line (no newline): the protobuf JSON mapping of ``pb``, as UTF-8.

    Keys are sorted so equal entities give equal bytes. Text stays literal
    UTF-8; ``json.dumps`` still escapes control characters, so a line never
    holds a raw newline.

    Raises:
        TypeError: ``pb`` is not a raw ``google.datastore.v1.Entity``.
        DumpFormatError: ``pb`` has fields unknown to this protobuf schema,
            which the JSON mapping would silently drop.
    """
    if not isinstance(pb, Entity):
        raise TypeError(f"expected a raw google.datastore.v1.Entity, got {type(pb)!r}")
    stripped = Entity()
    stripped.CopyFrom(pb)
    stripped.DiscardUnknownFields()
    if stripped.ByteSize() != pb.ByteSize():
        raise DumpFormatError(
            f"{describe_key(pb.key)} has fields unknown to this google-cloud-datastore;"
            " upgrade it to export the entity exactly"
        )
    obj = json_format.MessageToDict(pb)
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def decode_entity(line: bytes, path: str | None = None, lineno: int | None = None) -> Message:
    """Parse one dump line back into a raw ``Entity``; refuse anything else.

    Walks the JSON mapping directly (about 5x faster than ``json_format``'s
    reflection) and hands anything it does not expect to :func:`decode_strict`,
    so the result, and every refusal, is that of the strict parser.
    """
    try:
        entity = Entity()
        _fill_entity(json.loads(line, object_pairs_hook=_unique_keys), entity)
        return entity
    except Exception:  # noqa: BLE001 - any surprise: the strict parser decides
        return decode_strict(line, path, lineno)


def decode_strict(line: bytes, path: str | None = None, lineno: int | None = None) -> Message:
    """:func:`decode_entity` through ``json_format.Parse`` only (the reference)."""
    try:
        if not line.startswith(b"{"):  # Parse would take a list or a number as empty
            raise ValueError(f"a line must be a JSON object, got {line[:40]!r}")
        return json_format.Parse(line.decode("utf-8"), Entity())
    except (json_format.ParseError, ValueError, RecursionError) as e:
        raise DumpFormatError(f"not a Datastore entity in JSON: {e}", path, lineno) from e


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise ValueError("duplicate key")
    return obj


def _int64(data: Any) -> int:
    """An int64 as the JSON mapping spells it: a decimal string, or a JSON integer."""
    if type(data) is int or (type(data) is str and re.fullmatch(r"-?[0-9]+", data)):
        return int(data)
    raise ValueError(data)


def _fill_entity(obj: dict[str, Any], entity: Message) -> None:
    for field, data in obj.items():
        if field == "key":
            _fill_key(data, entity.key)
        elif field == "properties":
            for name, value in data.items():
                _fill_value(value, entity.properties[name])
        else:
            raise ValueError(field)


def _fill_key(obj: dict[str, Any], key: Message) -> None:
    for field, data in obj.items():
        if field == "partitionId":
            partition = key.partition_id
            for name, value in data.items():
                setattr(partition, _PARTITION_FIELDS[name], value)
        elif field == "path":
            for item in data:
                element = key.path.add()
                for name, value in item.items():
                    if name == "id":
                        element.id = _int64(value)
                    elif name in ("kind", "name"):
                        setattr(element, name, value)
                    else:
                        raise ValueError(name)
        else:
            raise ValueError(field)


_PARTITION_FIELDS = {
    "projectId": "project_id",
    "databaseId": "database_id",
    "namespaceId": "namespace_id",
}
_SCALARS = {"stringValue": "string_value", "booleanValue": "boolean_value"}
_VALUE_OPTIONS = {"excludeFromIndexes", "meaning"}


def _fill_value(obj: dict[str, Any], value: Message) -> None:
    if len(obj.keys() - _VALUE_OPTIONS) > 1:
        raise ValueError("a value holds one type")
    for field, data in obj.items():
        if field in _SCALARS and type(data) in (str, bool):
            setattr(value, _SCALARS[field], data)
        elif field == "integerValue":
            value.integer_value = _int64(data)
        elif field == "doubleValue" and type(data) in (int, float):
            value.double_value = data
        elif field == "timestampValue":
            value.timestamp_value.FromJsonString(data)
        elif field == "keyValue":
            _fill_key(data, value.key_value)
        elif field == "arrayValue":
            array = value.array_value
            array.SetInParent()
            for item in data.get("values", ()):
                _fill_value(item, array.values.add())
            if set(data) - {"values"}:
                raise ValueError(data)
        elif field == "entityValue":
            value.entity_value.SetInParent()
            _fill_entity(data, value.entity_value)
        elif field == "excludeFromIndexes" and type(data) is bool:
            value.exclude_from_indexes = data
        elif field == "meaning" and type(data) is int:
            value.meaning = data
        elif field == "nullValue" and data is None:
            value.null_value = 0
        else:  # blobs, geo points, special doubles: rare enough for the strict parser
            raise ValueError(field)


def describe_key(key: Message) -> str:
    """A key for messages: ``Key('Parent', 1, 'Child', 'x', namespace='n')``."""
    parts = []
    for element in key.path:
        which = element.WhichOneof("id_type")
        parts += [repr(element.kind), repr(getattr(element, which)) if which else "None"]
    for label in ("namespace", "database"):
        if value := getattr(key.partition_id, f"{label}_id"):
            parts.append(f"{label}={value!r}")
    return f"Key({', '.join(parts)})"


def check_entity(pb: Message, path: str | None = None, lineno: int | None = None) -> None:
    """Refuse an entity an import must not write: no key, a reserved kind, too large."""
    if not pb.HasField("key") or not pb.key.path:
        raise DumpFormatError("entity has no key", path, lineno)
    key = describe_key(pb.key)
    for element in pb.key.path:
        if _RESERVED_KIND.fullmatch(element.kind):
            raise DumpFormatError(f"reserved kind {element.kind!r} in {key}", path, lineno)
    if (size := pb.key.ByteSize()) > MAX_KEY_BYTES:
        message = f"{key} is {size} bytes, over the {MAX_KEY_BYTES}-byte key limit"
        raise DumpFormatError(message, path, lineno)
    if (size := pb.ByteSize()) > MAX_ENTITY_BYTES:
        message = f"{key} is {size} bytes, over the {MAX_ENTITY_BYTES}-byte entity limit"
        raise DumpFormatError(message, path, lineno)


# -- where the files live --------------------------------------------------------


class DumpStore(abc.ABC):
    """The files of one dump, named by '/'-separated paths relative to its root."""

    @abc.abstractmethod
    def location(self, relpath: str = "") -> str:
        """The full name of ``relpath`` (or of the root), for messages."""

    @abc.abstractmethod
    def open_read(self, relpath: str) -> IO[bytes]:
        """Open ``relpath`` for reading; FileNotFoundError if it does not exist."""

    @abc.abstractmethod
    def open_write(self, relpath: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        """Write ``relpath`` whole: it appears (or is replaced) only on a clean exit."""

    @abc.abstractmethod
    def exists(self, relpath: str) -> bool:
        """Whether the file ``relpath`` exists."""

    @abc.abstractmethod
    def list_files(self, prefix: str = "") -> list[str]:
        """The relative paths of the files under the folder ``prefix``, sorted."""

    @abc.abstractmethod
    def delete_all(self) -> None:
        """Remove the whole dump (every file under this location)."""


DumpLocation: TypeAlias = "str | os.PathLike[str] | DumpStore"


class LocalDumpStore(DumpStore):
    """A dump in a local directory; writes go to a temp file renamed into place."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = os.path.abspath(os.fspath(root))

    def _file(self, relpath: str) -> str:
        return os.path.join(self.root, *check_relpath(relpath).split("/"))

    def location(self, relpath: str = "") -> str:
        return self._file(relpath) if relpath else self.root

    def open_read(self, relpath: str) -> IO[bytes]:
        return open(self._file(relpath), "rb")  # noqa: SIM115 - the caller closes it

    @contextlib.contextmanager
    def open_write(self, relpath: str) -> Iterator[IO[bytes]]:
        final = self._file(relpath)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        temp = f"{final}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
        try:
            with open(temp, "xb") as f:
                yield f
                f.flush()
                os.fsync(f.fileno())
            os.replace(temp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    def exists(self, relpath: str) -> bool:
        return os.path.isfile(self._file(relpath))

    def list_files(self, prefix: str = "") -> list[str]:
        found = []
        for dirpath, _dirs, files in os.walk(self.location(prefix)):
            rel = os.path.relpath(dirpath, self.root).replace(os.sep, "/")
            found += [n if rel == "." else f"{rel}/{n}" for n in files if ".tmp-" not in n]
        return sorted(found)

    def delete_all(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class GcsDumpStore(DumpStore):
    """A dump under ``gs://bucket/prefix``; an object appears only once fully uploaded."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None):
        from google.cloud import storage  # type: ignore[attr-defined]  # optional dependency

        self.client = client if client is not None else storage.Client()
        self.bucket = self.client.bucket(bucket)
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""

    def _name(self, relpath: str) -> str:
        return self.prefix + check_relpath(relpath)

    def location(self, relpath: str = "") -> str:
        name = self._name(relpath) if relpath else self.prefix
        return f"gs://{self.bucket.name}/{name}".rstrip("/")

    def open_read(self, relpath: str) -> IO[bytes]:
        from google.api_core.exceptions import NotFound

        blob = self.bucket.blob(self._name(relpath))
        try:
            blob.reload()  # a missing object fails here, not at the first read
        except NotFound as e:
            raise FileNotFoundError(self.location(relpath)) from e
        return blob.open("rb", chunk_size=_GCS_CHUNK)  # type: ignore[no-any-return]

    def open_write(self, relpath: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        # A BlobWriter cancels its upload when the with-block raises.
        blob = self.bucket.blob(self._name(relpath))
        return blob.open("wb", chunk_size=_GCS_CHUNK, ignore_flush=True)  # type: ignore[no-any-return]

    def exists(self, relpath: str) -> bool:
        return bool(self.bucket.blob(self._name(relpath)).exists())

    def list_files(self, prefix: str = "") -> list[str]:
        folder = self._name(prefix) + "/" if prefix else self.prefix
        blobs = self.client.list_blobs(self.bucket, prefix=folder)
        return sorted(b.name[len(self.prefix) :] for b in blobs)

    def delete_all(self) -> None:
        if not self.prefix:
            raise ConfigurationError(f"refusing to empty the whole bucket {self.location()!r}")
        for blob in self.client.list_blobs(self.bucket, prefix=self.prefix):
            blob.delete()


def open_dump_store(location: DumpLocation, *, gcs_client: Any = None) -> DumpStore:
    """The store for a local path or a ``gs://bucket/prefix`` URL (a store is returned as is)."""
    if isinstance(location, DumpStore):
        return location
    text = os.fspath(location)
    if text.startswith("gs://"):
        bucket, _, prefix = text[len("gs://") :].partition("/")
        if not bucket:
            raise ConfigurationError(f"a gs:// dump location needs a bucket: {text!r}")
        try:
            return GcsDumpStore(bucket, prefix, gcs_client)
        except ImportError as e:
            raise ConfigurationError(f"{text!r}: gs:// needs google-cloud-storage installed") from e
    if "://" in text:
        raise ConfigurationError(f"unsupported dump location {text!r}: use a local path or gs://")
    return LocalDumpStore(text)


def check_relpath(relpath: str) -> str:
    """Return ``relpath`` if it names a file inside a dump, else raise DumpFormatError."""
    parts = relpath.split("/") if isinstance(relpath, str) else [""]
    if any(p in ("", ".", "..") or "\\" in p or "\0" in p for p in parts):
        raise DumpFormatError(f"not a relative path inside the dump: {relpath!r}")
    return relpath


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

    One batch writes exactly one part, so a replayed batch rewrites its own
    file. The default namespace is spelled ``~default`` (``~`` cannot occur in
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
    """Wraps a file, hashing every byte that passes through in either direction."""

    def __init__(self, raw: IO[bytes]):
        self.raw, self.sha, self.size = raw, hashlib.sha256(), 0

    def _seen(self, data: bytes) -> bytes:
        self.sha.update(data)
        self.size += len(data)
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

    Entities are yielded as they are read: a checksum or count mismatch is
    known only at the end, and raises then. Run :func:`validate_dump` before
    acting on a dump you have not checked.
    """
    reader = _PartReader(open_dump_store(directory), relpath)
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
    """Iterates a part's entities; ``info`` describes the file once iteration ends."""

    def __init__(self, store: DumpStore, relpath: str):
        self.store, self.relpath = store, check_relpath(relpath)
        self.where = store.location(relpath)
        self.info = PartInfo(relpath, 0, "", 0)

    def __iter__(self) -> Iterator[Message]:
        try:
            raw = self.store.open_read(self.relpath)
        except FileNotFoundError as e:
            raise DumpFormatError("incomplete dump: part file is missing", self.where) from e
        with raw:
            source, tally = _Hashing(raw), _Tally()
            try:
                with gzip.GzipFile(fileobj=source, mode="rb") as gz:  # type: ignore[call-overload]
                    yield from map(tally.add, self._entities(gz))
                while source.read(1 << 16):  # hash any bytes after the gzip stream too
                    pass
                if source.size == 0:  # gzip reads an empty file as empty data
                    raise EOFError("the file is empty")
            except (EOFError, gzip.BadGzipFile, zlib.error) as e:
                raise DumpFormatError(f"truncated or corrupt gzip data: {e}", self.where) from e
        self.info = tally.info(self.relpath, source)

    def _entities(self, gz: gzip.GzipFile) -> Iterator[Message]:
        lineno = 0
        while line := gz.readline(MAX_LINE_BYTES + 1):
            lineno += 1
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                raise DumpFormatError(f"line over {MAX_LINE_BYTES} bytes", self.where, lineno)
            yield decode_entity(line.removesuffix(b"\n"), self.where, lineno)


# -- the manifest -------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Manifest:
    """The table of contents of a complete dump; written last."""

    format: str = FORMAT_NAME
    version: int = FORMAT_VERSION
    #: RFC 3339 UTC, e.g. ``2024-05-01T12:00:00.000000Z``.
    created: str
    project: str
    database: str
    namespaces: tuple[str, ...]
    kinds: tuple[str, ...]
    #: Free-form JSON the writer keeps (job id, filters); readers ignore it.
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)
    parts: tuple[PartInfo, ...]

    @classmethod
    def build(
        cls,
        project: str,
        database: str,
        parts: Iterable[PartInfo],
        kinds: Iterable[str] = (),
        namespaces: Iterable[str] = (),
        metadata: dict[str, Any] | None = None,
    ) -> Manifest:
        """A manifest of ``parts`` created now; kinds and namespaces include the parts'."""
        parts = tuple(parts)
        return cls(
            created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            project=project,
            database=database,
            namespaces=tuple(sorted({*namespaces, *(n for p in parts for n in p.namespaces)})),
            kinds=tuple(sorted({*kinds, *(k for p in parts for k in p.kinds)})),
            metadata=dict(metadata or {}),
            parts=parts,
        )

    @property
    def totals(self) -> dict[str, int]:
        """Parts, entities and stored bytes in the whole dump."""
        entities, size = sum(p.count for p in self.parts), sum(p.bytes for p in self.parts)
        return {"parts": len(self.parts), "entities": entities, "bytes": size}

    def to_json(self) -> dict[str, Any]:
        """The manifest as a JSON object (tuples become lists when dumped)."""
        obj = dataclasses.asdict(self)
        parts = obj.pop("parts")
        return {**obj, "totals": self.totals, "parts": parts}

    @classmethod
    def from_json(cls, obj: Any, where: str | None = None) -> Manifest:
        """Check and load a manifest object; DumpFormatError names what is wrong."""
        _check_format(obj, where)
        fields = _load(obj, _MANIFEST_FIELDS, where)
        totals = fields.pop("totals")
        fields["parts"] = tuple(PartInfo(**_load(p, _PART_FIELDS, where)) for p in fields["parts"])
        manifest = cls(**fields)
        _check_consistent(manifest, totals, where)
        return manifest


def _is_relpath(value: Any) -> bool:
    try:
        return bool(check_relpath(value))
    except DumpFormatError:
        return False


def _is_utc_timestamp(value: Any) -> bool:
    try:
        return value.endswith("Z") and bool(datetime.fromisoformat(value[:-1] + "+00:00"))
    except (AttributeError, ValueError):
        return False


_Check = tuple[Callable[[Any], bool], str]
_STR: _Check = (lambda v: isinstance(v, str), "a string")
_COUNT: _Check = (lambda v: type(v) is int and v >= 0, "a non-negative integer")
_STRS: _Check = (lambda v: type(v) is list and all(isinstance(s, str) for s in v), "strings")
_PART_FIELDS: dict[str, _Check] = {
    "path": (lambda v: _is_relpath(v), "a relative path inside the dump"),
    "count": _COUNT,
    "sha256": (lambda v: isinstance(v, str) and bool(re.fullmatch("[0-9a-f]{64}", v)), "hex"),
    "bytes": _COUNT,
    "kinds": _STRS,
    "namespaces": _STRS,
}
_MANIFEST_FIELDS: dict[str, _Check] = {
    "format": _STR,
    "version": _COUNT,
    "created": (_is_utc_timestamp, "an RFC 3339 UTC timestamp"),
    "project": _STR,
    "database": _STR,
    "namespaces": _STRS,
    "kinds": _STRS,
    "metadata": (lambda v: isinstance(v, dict), "an object"),
    "totals": (lambda v: isinstance(v, dict), "an object"),
    "parts": (lambda v: isinstance(v, list), "a list"),
}


def _load(obj: Any, checks: dict[str, _Check], where: str | None) -> dict[str, Any]:
    """The fields of ``obj`` (lists as tuples) if it has exactly ``checks``' fields, each valid."""
    if not isinstance(obj, dict) or set(obj) != set(checks):
        got = sorted(obj) if isinstance(obj, dict) else obj
        raise DumpFormatError(
            f"expected an object with fields {sorted(checks)}, got {got!r}", where
        )
    for name, (ok, meaning) in checks.items():
        if not ok(obj[name]):
            raise DumpFormatError(f"{name!r} must be {meaning}, got {obj[name]!r}", where)
    return {k: tuple(v) if type(v) is list and k != "parts" else v for k, v in obj.items()}


def _check_format(obj: Any, where: str | None) -> None:
    name = obj.get("format") if isinstance(obj, dict) else None
    if name != FORMAT_NAME:
        raise DumpFormatError(f"not a {FORMAT_NAME} manifest: format is {name!r}", where)
    version = obj.get("version")
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
        readable = "1" if FORMAT_VERSION == 1 else f"1 to {FORMAT_VERSION}"
        message = (
            f"unsupported dump format version {version!r}: this mapper reads version {readable}"
        )
        raise DumpFormatError(message, where)


def _check_consistent(manifest: Manifest, totals: Any, where: str | None) -> None:
    if totals != manifest.totals:
        message = f"manifest totals {totals!r} disagree with its parts: {manifest.totals!r}"
        raise DumpFormatError(message, where)
    paths = [p.path for p in manifest.parts]
    if len(set(paths)) != len(paths) or MANIFEST in paths:
        raise DumpFormatError("manifest lists a part twice, or itself as a part", where)
    stray = {k for p in manifest.parts for k in p.kinds} - set(manifest.kinds)
    stray |= {n for p in manifest.parts for n in p.namespaces} - set(manifest.namespaces)
    if stray:
        raise DumpFormatError(f"parts hold kinds/namespaces not listed: {sorted(stray)!r}", where)


def write_manifest(directory: DumpLocation, manifest: Manifest) -> None:
    """Write ``manifest.json`` atomically; do it last, once every part is written."""
    data = json.dumps(manifest.to_json(), indent=2, ensure_ascii=False) + "\n"
    with open_dump_store(directory).open_write(MANIFEST) as f:
        f.write(data.encode())


def read_manifest(directory: DumpLocation) -> Manifest:
    """Read and check ``manifest.json``; refuse an incomplete dump or an unknown format."""
    store = open_dump_store(directory)
    try:
        with store.open_read(MANIFEST) as f:
            data = f.read()
    except FileNotFoundError as e:
        raise DumpFormatError(f"incomplete dump: no {MANIFEST}", store.location()) from e
    try:
        obj = json.loads(data.decode("utf-8"))
    except ValueError as e:
        raise DumpFormatError(f"manifest is not JSON: {e}", store.location(MANIFEST)) from e
    return Manifest.from_json(obj, store.location(MANIFEST))


def validate_dump(
    directory: DumpLocation,
    check: Callable[[Message, str, int], None] | None = None,
) -> Manifest:
    """Check a whole dump, streaming, before anything is imported from it.

    Every listed part must exist and match its checksum, size and count; every
    entity must have a key, no reserved kind (``__*__``) in its key path, a kind
    and namespace its part lists, and fit Datastore's entity size limit.
    ``check(entity, where, lineno)`` adds a caller's own test of each entity.
    """
    store = open_dump_store(directory)
    manifest = read_manifest(store)
    for part in manifest.parts:
        where = store.location(part.path)
        for lineno, pb in enumerate(read_part(store, part.path, part), 1):
            check_entity(pb, where, lineno)
            kind, namespace = pb.key.path[-1].kind, pb.key.partition_id.namespace_id
            if kind not in part.kinds or namespace not in part.namespaces:
                message = f"{describe_key(pb.key)} is of a kind or namespace its part does not list"
                raise DumpFormatError(message, where, lineno)
            if check is not None:
                check(pb, where, lineno)
    return manifest


def copy_dump(source: DumpLocation, target: DumpLocation) -> None:
    """Copy every file of a dump, the manifest last (so the copy is complete or refused)."""
    src, dst = open_dump_store(source), open_dump_store(target)
    files = [f for f in src.list_files() if f != MANIFEST] + [MANIFEST]
    for relpath in files:
        with src.open_read(relpath) as reader, dst.open_write(relpath) as writer:
            shutil.copyfileobj(reader, writer, _GCS_CHUNK)
