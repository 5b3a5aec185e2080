"""Import with key remap: choose every new key first, then write entities with keys rewritten.

Stages, each a job over the staged parts, the next started by the previous one's
``finish()``:

1. ``map:1`` .. ``map:D`` (one per key-path depth, so parents are mapped before
   their children): every dump key gets its new key (natural-key match, kept
   or prefixed name, or an allocated id) and the choice is persisted in the
   key map before anything else happens.
2. ``check`` (with ``--dangling fail``): every reference must be in the dump or
   the target, else the import fails before writing a single entity.
3. ``write``: each entity with its key, parent path and every key value
   rewritten through the key map, schema drift applied, written in bounded
   batches. Entities merged by natural key or skipped on conflict are not written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from mapper.base import Mapper
from mapper.datastore.keys import key_bytes, key_repr
from mapper.datastore.keywalk import (
    Partition,
    is_complete,
    key_sites,
    partition_of,
    set_partition,
)
from mapper.datastore.query import kind_query, results, value_filter
from mapper.datastore.rpc import Key
from mapper.dump.parts import PartInfo
from mapper.dump.sources import read_part
from mapper.errors import InvalidJobError, PermanentSliceError
from mapper.transfer.keymap import (
    ALLOCATED,
    CONFLICT_SKIPPED,
    MERGED,
    NAMED,
    NOT_WRITTEN,
    OVERWRITE,
    KeyMap,
)
from mapper.transfer.options import RemapOptions, apply_schema

#: The staged part records every import stage walks.
PART_KIND = "_MapperImportPart"


class ImportStage(Mapper):
    """What every import stage mapper shares: its parts, key map and partition moves."""

    KIND = PART_KIND
    RAW = True

    def __init__(self, **params: Any):
        super().__init__(**params)
        self.setup()

    def setup(self) -> None:
        if not isinstance(self.params.get("import"), str):
            raise InvalidJobError(f"an import stage needs an 'import' param: {self.params}")
        self.FILTERS = [("import_id", self.params["import"])]
        self.options = RemapOptions.from_json(self.params.get("options") or {})
        self.moves: dict[Partition, Partition] = {
            tuple(src): tuple(dst)  # type: ignore[misc]
            for src, dst in self.params["moves"]
        }

    def keymap(self) -> KeyMap:
        rt = self.runtime
        return KeyMap(rt.store, rt.settings.state_namespace, self.params["import"])

    def part_entities(self, record: Any) -> Iterator[Any]:
        props = record.properties
        part = PartInfo(
            path=props["path"].string_value,
            count=props["count"].integer_value,
            sha256=props["sha256"].string_value,
            bytes=props["bytes"].integer_value,
        )
        return read_part(self.params["source"], part.path, part)

    def moved(self, key: Any) -> Any:
        """``key`` with its partition moved to the target (a copy)."""
        copy = Key()
        copy.CopyFrom(key)
        target = self.moves.get(partition_of(key))
        if target is not None:
            set_partition(copy, target)
        return copy

    def in_dump_partition(self, key: Any) -> bool:
        return partition_of(key) in self.moves

    def is_reference(self, key: Any) -> bool:
        """Only a complete key of the dump's partitions can point at an entity it maps:
        an embedded entity's incomplete key, or another project's key, is just a value."""
        return is_complete(key) and self.in_dump_partition(key)


# -- stage 1: choose new keys ------------------------------------------------------------


#: Part records of keys chosen in the write stage (unreferenced kinds) use depth + this.
WRITE_SLOT = 1000


def choose_keys(
    stage: ImportStage, part: int, entities: list[Any], count: Callable[..., None]
) -> list[tuple[Any, Any, str]]:
    """Map the entities of one part at one depth, persist the choices, return them.

    A replay finds the part record and rewrites the same per-entity records: no
    second allocation, the same new ids.
    """
    if not entities:
        return []
    record = (part, len(entities[0].key.path))
    chosen = stage.keymap().lookup_parts([record])
    if record not in chosen:
        chosen = choose_new_keys(stage, {record: entities})
    record_entities(stage, chosen, count)
    return chosen[record]


def choose_new_keys(
    stage: ImportStage, parts: dict[tuple[int, int], list[Any]]
) -> dict[tuple[int, int], list[tuple[Any, Any, str]]]:
    """New keys for parts' entities, {(part, slot): entities} with no record yet, and
    their part records written (all parts' in one commit): returns the stored choices,
    these or those of a copy of this batch that recorded first."""
    chosen = {where: _choose(stage, entities) for where, entities in parts.items()}
    stage.runtime.fault("after_allocate", import_id=stage.params["import"])
    return stage.keymap().record_parts(chosen)


def record_entities(
    stage: ImportStage,
    chosen: dict[tuple[int, int], list[tuple[Any, Any, str]]],
    count: Callable[..., None],
) -> None:
    """One key-map record per entity, for lookups by key from elsewhere (written again
    by a replay): only the kinds something in the dump refers to need one, the part
    records cover the rest. Then ``chosen`` is counted."""
    referenced = stage.params.get("referenced_kinds")
    stage.keymap().record(
        [
            c
            for pairs in chosen.values()
            for c in pairs
            if referenced is None or c[0].path[-1].kind in referenced
        ]
    )
    stage.runtime.fault("after_map_write", import_id=stage.params["import"])
    for pairs in chosen.values():
        for _, _, how in pairs:
            count(how)


def _choose(stage: ImportStage, entities: list[Any]) -> list[tuple[Any, Any, str]]:
    """New keys for ``entities``: natural-key match, name (kept or prefixed), or a new id."""
    options, keymap = stage.options, stage.keymap()
    parents = keymap.lookup(parent_key(e.key) for e in entities if len(e.key.path) > 1)
    chosen: list[tuple[Any, Any, str]] = []
    named: list[tuple[Any, Any]] = []
    to_allocate: list[tuple[Any, Any]] = []
    for entity in entities:
        new = _under_parent(stage, entity.key, parents)
        element = new.path[-1]
        match = natural_match(stage, entity, new)
        if match is not None:
            chosen.append((entity.key, match, MERGED))
        elif element.WhichOneof("id_type") == "name":
            element.name = (options.rename_names or "") + element.name
            named.append((entity.key, new))
        else:
            element.ClearField("id")
            to_allocate.append((entity.key, new))
    chosen += _resolve_names(stage, named)
    if to_allocate:
        allocated = stage.runtime.store.allocate_ids([new for _, new in to_allocate])
        olds = [old for old, _ in to_allocate]
        chosen += [(old, new, ALLOCATED) for old, new in zip(olds, allocated, strict=True)]
    return chosen


def parent_key(key: Any) -> Any:
    parent = Key()
    parent.CopyFrom(key)
    del parent.path[-1]
    return parent


def _under_parent(stage: ImportStage, old: Any, parents: dict[bytes, tuple[Any, str]]) -> Any:
    """The old key moved to the target, below its parent's new key when that is mapped."""
    new = stage.moved(old)
    if len(old.path) > 1:
        mapped = parents.get(key_bytes(parent_key(old)))
        if mapped is not None:
            last = Key.PathElement()
            last.CopyFrom(new.path[-1])
            new.CopyFrom(mapped[0])
            new.path.append(last)
    return new


def natural_match(stage: ImportStage, entity: Any, new: Any) -> Any | None:
    """The key of the target entity with the same natural-key values, if any."""
    kind = entity.key.path[-1].kind
    props = stage.options.natural_keys.get(kind)
    if not props or any(p not in entity.properties for p in props):
        return None
    filters = [value_filter(prop, entity.properties[prop]) for prop in props]
    query = kind_query(kind, filters, keys_only=True)
    query.limit.value = 1
    found = next(results(stage.runtime.store, query, new.partition_id.namespace_id), None)
    return found.key if found is not None else None


def _resolve_names(stage: ImportStage, named: list[tuple[Any, Any]]) -> list[tuple[Any, Any, str]]:
    """Named keys are kept; one that already exists in the target follows --on-conflict."""
    if not named:
        return []
    existing = stage.runtime.store.lookup([new for _, new in named])
    result = []
    for old, new in named:
        if key_bytes(new) not in existing:
            result.append((old, new, NAMED))
        elif stage.options.on_conflict == "skip":
            result.append((old, new, CONFLICT_SKIPPED))
        elif stage.options.on_conflict == "overwrite":
            result.append((old, new, OVERWRITE))
        else:
            raise PermanentSliceError(
                f"{key_repr(new)} already exists in the target (--on-conflict fail)",
                key=key_repr(old),
            )
    return result


# -- references ------------------------------------------------------------------


def dangling(
    stage: ImportStage,
    entities: list[Any],
    known: dict[bytes, tuple[Any, str]] | None = None,
    sites: list[tuple[list[Any], list[Any]]] | None = None,
) -> tuple[dict[bytes, Any], set[bytes]]:
    """(mapped references, dangling references) of ``entities``, by old key bytes.

    ``known`` mappings (the part's own, say) are not looked up again; ``sites`` are the
    entities' :func:`key_sites`, when the caller has walked them already.
    """
    refs: dict[bytes, Any] = {}
    embedded: dict[bytes, Any] = {}
    for values, keys in sites if sites is not None else map(key_sites, entities):
        refs |= {key_bytes(v.key_value): v.key_value for v in values}
        embedded |= {key_bytes(k): k for k in keys}
    refs = {b: k for b, k in refs.items() if stage.is_reference(k)}
    embedded = {b: k for b, k in embedded.items() if stage.is_reference(k)}
    parents = {
        key_bytes(p): p for p in (parent_key(e.key) for e in entities if len(e.key.path) > 1)
    }
    wanted = {**refs, **parents, **embedded}
    known = known or {}
    mapped = {b: known[b] for b in wanted if b in known}
    mapped |= stage.keymap().lookup(k for b, k in wanted.items() if b not in known)
    unmapped = {b: k for b, k in wanted.items() if b not in mapped}
    in_target = stage.runtime.store.lookup([stage.moved(k) for k in unmapped.values()])
    missing = {b for b, k in unmapped.items() if key_bytes(stage.moved(k)) not in in_target}
    return mapped, missing & (set(refs) | set(parents))


# -- stage 3: write ------------------------------------------------------------------


def own_keys(
    stage: ImportStage, parts: dict[int, list[Any]], count: Callable[..., None]
) -> dict[bytes, tuple[Any, str]]:
    """{old key bytes: (new key, how)} for the entities of a batch's parts (by index).

    The map stages' choices, and those of a run of this batch that did not reach its
    checkpoint, are read back in one lookup; kinds nothing refers to get their keys
    here, depth by depth (parents first), every part's in one go.
    """
    depths = {part: {len(e.key.path) for e in entities} for part, entities in parts.items()}
    slots = [(p, slot + d) for p, ds in depths.items() for d in ds for slot in (0, WRITE_SLOT)]
    own: dict[bytes, tuple[Any, str]] = {}
    for (_, slot), pairs in stage.keymap().lookup_parts(slots).items():
        for old, new, how in pairs:
            own[key_bytes(old)] = (new, how)
            if slot >= WRITE_SLOT:
                # Chosen by this stage in a run of this batch that did not reach its
                # checkpoint: the counts go with this run's.
                count(how)
    for depth in sorted(set().union(*depths.values())):
        unmapped = {
            (part, WRITE_SLOT + depth): todo
            for part, entities in parts.items()
            if (todo := [e for e in entities if _unmapped_at(e, depth, own)])
        }
        if unmapped:
            chosen = choose_new_keys(stage, unmapped)
            record_entities(stage, chosen, count)
            own |= {key_bytes(old): (new, how) for c in chosen.values() for old, new, how in c}
    return own


def _unmapped_at(entity: Any, depth: int, own: dict[bytes, tuple[Any, str]]) -> bool:
    return len(entity.key.path) == depth and key_bytes(entity.key) not in own


def rewrite(
    stage: ImportStage,
    entities: list[Any],
    own: dict[bytes, tuple[Any, str]],
    count: Callable[..., None],
) -> list[Any]:
    """The entities to put, keys rewritten through the key map (``own``: the new keys of
    the batch's entities, :func:`own_keys`), schema drift applied."""
    sites = [key_sites(entity) for entity in entities]
    mapped, missing = dangling(stage, entities, known=own, sites=sites)
    puts = []
    for entity, (values, keys) in zip(entities, sites, strict=True):
        entry = own.get(key_bytes(entity.key))
        if entry is None:
            raise PermanentSliceError(
                "not in the key map: the map stage did not finish", key=key_repr(entity.key)
            )
        new, how = entry
        if how in NOT_WRITTEN:
            count("not_written")
            continue
        for value in values:
            _rewrite_reference(stage, value, mapped, missing, count)
        for key in keys:
            _rewrite_key(stage, key, mapped)
        entity.key.CopyFrom(new)
        apply_schema(entity, stage.options)
        puts.append(entity)
    return puts


def _rewrite_reference(
    stage: ImportStage,
    value: Any,
    mapped: dict[bytes, tuple[Any, str]],
    missing: set[bytes],
    count: Callable[..., None],
) -> None:
    old = key_bytes(value.key_value)
    if old in missing:
        count("dangling")
        if stage.options.dangling == "null":
            value.null_value = 0  # the oneof drops the key
            return
    _rewrite_key(stage, value.key_value, mapped)


def _rewrite_key(stage: ImportStage, key: Any, mapped: dict[bytes, tuple[Any, str]]) -> None:
    entry = mapped.get(key_bytes(key))
    if entry is not None:
        key.CopyFrom(entry[0])
    elif stage.in_dump_partition(key):
        set_partition(key, stage.moves[partition_of(key)])
