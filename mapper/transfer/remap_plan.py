"""The dry run of an import with key remap: what it would insert, merge, skip and leave dangling.

Reads the dump twice and writes nothing, not even the key map. The set of the
dump's keys is held in memory (about 100 bytes a key), which a report can
afford; the import itself keeps its key map in the store.
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

from mapper.datastore.keys import key_bytes, key_repr
from mapper.datastore.keywalk import reference_values
from mapper.dump.sources import read_part
from mapper.transfer.remap import ImportStage, natural_match, parent_key

if TYPE_CHECKING:
    from mapper.dump.manifest import Manifest
    from mapper.engine.runtime import Runtime
    from mapper.transfer.importer import ImportSpec

SAMPLES = 5
COLUMNS = ("inserts", "merges", "conflicts", "dangling")


def plan_remap(
    rt: Runtime, spec: ImportSpec, params: dict[str, Any], manifest: Manifest
) -> dict[str, Any]:
    """Per kind: inserts, natural-key merges, name conflicts and dangling references, over
    the parts of ``manifest`` (the dump's validated table of contents)."""
    stage = ImportStage(**params)
    stage.bind(params["import"], None, rt)
    dump_keys = {
        key_bytes(pb.key)
        for part in manifest.parts
        for pb in read_part(spec.source, part.path, part)
    }
    report: dict[str, dict[str, Any]] = collections.defaultdict(_row)
    for part in manifest.parts:
        entities = list(read_part(spec.source, part.path, part))
        conflicts = _conflicts(stage, entities, dump_keys)
        missing = _missing(stage, entities, dump_keys)
        for entity in entities:
            row = report[entity.key.path[-1].kind]
            if natural_match(stage, entity, stage.moved(entity.key)) is not None:
                _add(row, "merges", entity.key)
            elif key_bytes(entity.key) in conflicts:
                _add(row, "conflicts", entity.key)
            else:
                _add(row, "inserts", entity.key)
            for ref in _references(entity):
                if key_bytes(ref) in missing:
                    _add(row, "dangling", ref)
    return dict(sorted(report.items()))


def _row() -> dict[str, Any]:
    return {column: 0 for column in COLUMNS} | {"samples": {column: [] for column in COLUMNS}}


def _add(row: dict[str, Any], column: str, key: Any) -> None:
    row[column] += 1
    if len(row["samples"][column]) < SAMPLES:
        row["samples"][column].append(key_repr(key))


def _references(entity: Any) -> list[Any]:
    refs = [value.key_value for value in reference_values(entity)]
    return refs + ([parent_key(entity.key)] if len(entity.key.path) > 1 else [])


def _conflicts(stage: ImportStage, entities: list[Any], dump_keys: set[bytes]) -> set[bytes]:
    """Named entities whose key (names kept or prefixed) already exists in the target.

    Only a name below named ancestors can collide: an ancestor that gets a new id
    puts its children somewhere no target entity is yet.
    """
    prefix = stage.options.rename_names or ""
    candidates = {}
    for entity in entities:
        if not all(e.WhichOneof("id_type") == "name" for e in entity.key.path):
            continue
        new = stage.moved(entity.key)
        for depth in range(len(new.path), 0, -1):
            # An ancestor in the dump is renamed like the entity; one outside it is kept.
            if depth == len(new.path) or key_bytes(_as_dumped(entity.key, depth)) in dump_keys:
                new.path[depth - 1].name = prefix + new.path[depth - 1].name
        candidates[key_bytes(entity.key)] = new
    found = stage.runtime.store.lookup(list(candidates.values()))
    return {old for old, new in candidates.items() if key_bytes(new) in found}


def _as_dumped(key: Any, depth: int) -> Any:
    """The first ``depth`` elements of ``key``'s path, as the dump spells the key."""
    ancestor = type(key)()
    ancestor.CopyFrom(key)
    del ancestor.path[depth:]
    return ancestor


def _missing(stage: ImportStage, entities: list[Any], dump_keys: set[bytes]) -> set[bytes]:
    """References in the dump's partitions to keys neither in the dump nor in the target."""
    refs = {
        key_bytes(ref): ref
        for entity in entities
        for ref in _references(entity)
        if stage.is_reference(ref) and key_bytes(ref) not in dump_keys
    }
    found = stage.runtime.store.lookup([stage.moved(ref) for ref in refs.values()])
    return {old for old, ref in refs.items() if key_bytes(stage.moved(ref)) not in found}


def summarize(report: dict[str, dict[str, Any]]) -> list[str]:
    """The report as lines for a terminal."""
    lines = [f"  {'kind':<24}" + "".join(f"{c:>11}" for c in COLUMNS)]
    for kind, row in report.items():
        lines.append(f"  {kind:<24}" + "".join(f"{row[c]:>11}" for c in COLUMNS))
        for column in COLUMNS:
            if row["samples"][column]:
                lines.append(f"    {column}: " + ", ".join(row["samples"][column]))
    return lines
