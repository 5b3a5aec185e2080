"""The persisted old -> new key map of an import, looked up and written in batches.

One ``_MapperKeyMap`` entity per dump entity, in the state namespace, named by
the import id and a hash of the old key, read by key only (nothing indexed).
It is written before any entity is, so a replayed batch finds its keys already
chosen: no second allocation, the same new ids. Memory stays flat: callers ask
for the keys of one part at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from mapper.datastore.keys import key_bytes
from mapper.datastore.rpc import Entity, Key, Store

KIND = "_MapperKeyMap"
#: One record per (staged part, key depth): the part's choices, in the part's order.
PART_KIND = "_MapperKeyMapPart"
#: How a dump key got its new key.
ALLOCATED, NAMED, MERGED, CONFLICT_SKIPPED, OVERWRITE = (
    "allocated",
    "named",
    "merged",
    "conflict-skipped",
    "overwrite",
)
#: Entities mapped this way are not written: their new key is an existing target entity.
NOT_WRITTEN = frozenset({MERGED, CONFLICT_SKIPPED})


class KeyMap:
    """Old key (as in the dump) -> (new key, how) for one import."""

    def __init__(self, store: Store, state_namespace: str, import_id: str):
        self.store = store
        self.namespace = state_namespace
        self.import_id = import_id

    def record_key(self, old: Any) -> Any:
        digest = hashlib.sha256(key_bytes(old)).hexdigest()[:40]
        key = Key()
        key.partition_id.CopyFrom(self.store.partition(self.namespace))
        key.path.add(kind=KIND, name=f"{self.import_id}:{digest}")
        return key

    def lookup(self, olds: Iterable[Any]) -> dict[bytes, tuple[Any, str]]:
        """{old key bytes: (new key, how)} for the olds already mapped."""
        by_record = {key_bytes(self.record_key(old)): key_bytes(old) for old in olds}
        if not by_record:
            return {}
        found = self.store.lookup([Key.FromString(r) for r in by_record])
        result = {}
        for record_bytes, entity in found.items():
            props = entity.properties
            new = Key.FromString(props["new"].blob_value)
            result[by_record[record_bytes]] = (new, props["how"].string_value)
        return result

    def record(self, items: Sequence[tuple[Any, Any, str]]) -> None:
        """Persist ``(old, new, how)`` triples (idempotent: same record keys)."""
        entities = []
        for old, new, how in items:
            entity = Entity()
            entity.key.CopyFrom(self.record_key(old))
            entity.properties["old"].blob_value = key_bytes(old)
            entity.properties["old"].exclude_from_indexes = True
            entity.properties["new"].blob_value = key_bytes(new)
            entity.properties["new"].exclude_from_indexes = True
            entity.properties["how"].string_value = how
            entity.properties["how"].exclude_from_indexes = True
            entities.append(entity)
        self.store.write(entities, [])

    # -- per part: what a batch reads back for its own entities ----------------------

    def part_record_key(self, part: int, depth: int) -> Any:
        key = Key()
        key.partition_id.CopyFrom(self.store.partition(self.namespace))
        key.path.add(kind=PART_KIND, name=f"{self.import_id}:{part:06d}:{depth}")
        return key

    def record_part(self, part: int, depth: int, items: Sequence[tuple[Any, Any, str]]) -> None:
        """Persist one part's choices at one depth in a single record (written first)."""
        entity = Entity()
        entity.key.CopyFrom(self.part_record_key(part, depth))
        pairs = entity.properties["pairs"].array_value
        pairs.SetInParent()
        for old, new, how in items:
            value = pairs.values.add()
            value.exclude_from_indexes = True
            pair = value.entity_value.properties
            pair["old"].key_value.CopyFrom(old)
            pair["new"].key_value.CopyFrom(new)
            pair["how"].string_value = how
            for name in ("old", "new", "how"):
                pair[name].exclude_from_indexes = True
        self.store.write([entity], [])

    def lookup_parts(
        self, wanted: Iterable[tuple[int, int]]
    ) -> dict[tuple[int, int], list[tuple[Any, Any, str]]]:
        """{(part, depth): [(old, new, how), ...]} for the parts already mapped at a depth."""
        by_record = {key_bytes(self.part_record_key(p, d)): (p, d) for p, d in wanted}
        found = self.store.lookup([Key.FromString(r) for r in by_record]) if by_record else {}
        result = {}
        for record_bytes, entity in found.items():
            result[by_record[record_bytes]] = [
                (
                    v.entity_value.properties["old"].key_value,
                    v.entity_value.properties["new"].key_value,
                    v.entity_value.properties["how"].string_value,
                )
                for v in entity.properties["pairs"].array_value.values
            ]
        return result
