"""The manifest: a dump's table of contents, written last; validating a whole dump."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message

from mapper.datastore.keys import key_repr
from mapper.dump.codec import check_entity
from mapper.dump.files import GCS_CHUNK, DumpLocation, check_relpath, open_dump_store
from mapper.dump.parts import PartInfo, read_part
from mapper.errors import DumpFormatError

FORMAT_NAME = "mapper-dump"
#: Readers accept every version from 1 up to this one and refuse newer ones.
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
#: A manifest larger than this is refused before it is parsed (100,000 parts take ~30 MB).
MAX_MANIFEST_BYTES = 64 * 1024 * 1024

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
            data = f.read(MAX_MANIFEST_BYTES + 1)
    except FileNotFoundError as e:
        raise DumpFormatError(f"incomplete dump: no {MANIFEST}", store.location()) from e
    if len(data) > MAX_MANIFEST_BYTES:
        message = f"manifest is over {MAX_MANIFEST_BYTES} bytes: not a mapper-dump manifest"
        raise DumpFormatError(message, store.location(MANIFEST))
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
                message = f"{key_repr(pb.key)} is of a kind or namespace its part does not list"
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
            shutil.copyfileobj(reader, writer, GCS_CHUNK)
