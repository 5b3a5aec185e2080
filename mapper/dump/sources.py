"""Any dump an import or a cleanup reads: mapper's own, or a managed export (gcloud's).

A managed export is named by its ``.overall_export_metadata`` file, or by the
folder holding it; :func:`resolve_source` turns either into the file, which
is what a job's params carry (parts are then read without listing anything).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf.message import Message

from mapper.datastore.keys import key_repr
from mapper.dump import manifest as mapper_dump
from mapper.dump import parts as mapper_parts
from mapper.dump.codec import check_entity
from mapper.dump.files import DumpLocation
from mapper.dump.managed import tree
from mapper.dump.manifest import Manifest
from mapper.dump.parts import PartInfo
from mapper.errors import DumpFormatError

Check = Callable[[Message, str, int | None], None]


def resolve_source(location: str) -> str:
    """A managed export's overall metadata file, or ``location`` as given (a mapper dump)."""
    overall = tree.find_overall(location)
    return overall if overall is not None else location


def is_managed(source: DumpLocation) -> bool:
    return tree.is_managed(source)


def read_manifest(source: DumpLocation) -> Manifest:
    """The dump's table of contents (a managed export's is built from its files)."""
    overall = tree.find_overall(source)
    return (
        mapper_dump.read_manifest(source)
        if overall is None
        else tree.read_managed_manifest(overall)
    )


def read_part(
    source: DumpLocation, relpath: str, expected: PartInfo | None = None
) -> Iterator[Any]:
    """Stream one part's v1 entities; ``source`` as :func:`resolve_source` gives it."""
    if tree.is_managed(source):
        return tree.read_managed_part(str(source), relpath, expected)
    return mapper_parts.read_part(source, relpath, expected)


def validate_dump(
    source: DumpLocation, check: Check | None = None, manifest: Manifest | None = None
) -> Manifest:
    """Check a whole dump before anything is written from it (see ``validate_dump`` of
    mapper's format); a managed export gets the same checks of every entity, its
    errors naming the file and the record's byte offset.

    ``manifest``: a managed export's table as :func:`read_manifest` gave it, so the
    files are not scanned twice (each part's records are still checked against it).
    """
    overall = tree.find_overall(source)
    if overall is None:
        return mapper_dump.validate_dump(source, check)
    if manifest is None:
        manifest = tree.read_managed_manifest(overall)
    for part in manifest.parts:
        for offset, pb, where in tree.read_managed_records(overall, part.path, part):
            at = f"{where} (offset {offset})"
            check_entity(pb, at)
            kind, namespace = pb.key.path[-1].kind, pb.key.partition_id.namespace_id
            if kind not in part.kinds or namespace not in part.namespaces:
                message = f"{key_repr(pb.key)} is of a kind or namespace its part does not list"
                raise DumpFormatError(message, at)
            if check is not None:
                check(pb, at, None)
    return manifest
