"""The persisted old -> new key map of an import, looked up and written in batches.

One ``_MapperKeyMap`` entity per dump entity, in the state namespace, named by
the import id and a hash of the old key, read by key only (nothing indexed).
It is written before any entity is, so a replayed batch finds its keys already
chosen: no second allocation, the same new ids; and it is written only if absent,
so two copies of a batch running at once agree on the first copy's choices.
Memory stays flat: callers ask for the keys of one part at a time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from mapper.datastore import txn as txns
from mapper.datastore.keys import key_bytes
from mapper.datastore.rpc import Entity, Key, Store, bounded_batches

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

    def part_record_key(self, part: int, depth: int, chunk: int = 0) -> Any:
        key = Key()
        key.partition_id.CopyFrom(self.store.partition(self.namespace))
        name = f"{self.import_id}:{part:06d}:{depth}" + (f":{chunk}" if chunk else "")
        key.path.add(kind=PART_KIND, name=name)
        return key

    def record_parts(
        self, choices: Mapping[tuple[int, int], Sequence[tuple[Any, Any, str]]]
    ) -> dict[tuple[int, int], list[tuple[Any, Any, str]]]:
        """Persist parts' choices, {(part, depth): [(old, new, how), ...]}, each unless
        stored already, and return the stored ones: these, or those of a copy of this
        batch that got there first (a duplicate delivery, a batch that outlasted its lease).

        Insert-if-absent, so two copies never both record: the loser builds everything
        (per-entity records, written entities) from the winner's choices, and no entity
        can be written at one key while references point at another. A part's choices
        go in one record, inserted with the other parts' in one commit (each insert is
        atomic, which is all this needs); or in chunks when long keys would take one
        over Datastore's 1 MiB, the head record naming how many, in a transaction.
        """
        stored: dict[tuple[int, int], list[tuple[Any, Any, str]]] = {}
        pending = dict(choices)
        while pending:
            records = {where: self._part_records(where, items) for where, items in pending.items()}
            whole = {where: chunks[0] for where, chunks in records.items() if len(chunks) == 1}
            if self._insert_all(list(whole.values())):
                stored |= {where: list(pending[where]) for where in whole}
            for where, chunks in records.items():
                if len(chunks) > 1 and txns.run_in_transaction(self.store, _insert_chunked(chunks)):
                    stored[where] = list(pending[where])
            # What a failed insert met (and what it may have written: a commit of
            # inserts is not atomic) is read back; what is still absent goes again.
            stored |= self.lookup_parts([where for where in pending if where not in stored])
            pending = {w: items for w, items in pending.items() if w not in stored}
        return stored

    def _insert_all(self, records: list[Any]) -> bool:
        """Insert ``records`` in as few commits as they fit: False if one existed."""
        batches = bounded_batches(records, [], self.store.max_commit_bytes)
        return all(self.store.insert(puts) for puts, _ in batches)

    def record_part(
        self, part: int, depth: int, items: Sequence[tuple[Any, Any, str]]
    ) -> list[tuple[Any, Any, str]]:
        """:meth:`record_parts` for one part at one depth."""
        return self.record_parts({(part, depth): items})[(part, depth)]

    def _part_records(
        self, where: tuple[int, int], items: Sequence[tuple[Any, Any, str]]
    ) -> list[Any]:
        part, depth = where
        chunks = _chunks([_pack(old, new, how) for old, new, how in items])
        records = [self._part_record(part, depth, i, packed) for i, packed in enumerate(chunks)]
        records[0].properties["chunks"].integer_value = len(records)
        records[0].properties["chunks"].exclude_from_indexes = True
        return records

    def _part_record(self, part: int, depth: int, chunk: int, packed: list[bytes]) -> Any:
        entity = Entity()
        entity.key.CopyFrom(self.part_record_key(part, depth, chunk))
        entity.properties[PACKED].blob_value = b"".join(packed)
        entity.properties[PACKED].exclude_from_indexes = True
        return entity

    def lookup_parts(
        self, wanted: Iterable[tuple[int, int]]
    ) -> dict[tuple[int, int], list[tuple[Any, Any, str]]]:
        """{(part, depth): [(old, new, how), ...]} for the parts already mapped at a depth."""
        heads = self._lookup([(self.part_record_key(p, d), (p, d)) for p, d in wanted])
        more = [
            (self.part_record_key(part, depth, chunk), ((part, depth), chunk))
            for (part, depth), head in heads.items()
            for chunk in range(1, head.properties["chunks"].integer_value or 1)
        ]
        chunks = self._lookup(more)
        result = {}
        for where, head in heads.items():
            count = head.properties["chunks"].integer_value or 1
            records = [head] + [chunks[(where, c)] for c in range(1, count)]
            result[where] = [item for record in records for item in _unpack(record)]
        return result

    def _lookup(self, records: list[tuple[Any, Any]]) -> dict[Any, Any]:
        """{label: entity} for the (record key, label) pairs whose record exists."""
        by_bytes = {key_bytes(k): label for k, label in records}
        found = self.store.lookup([k for k, _ in records]) if records else {}
        return {by_bytes[b]: entity for b, entity in found.items()}


#: Bytes of choices one part record holds at most: well under Datastore's 1 MiB an entity.
PART_RECORD_BYTES = 700_000
#: The part record's one property: its choices packed in a blob (see :func:`_pack`).
PACKED = "packed"
#: The ``how`` of a packed choice, by its byte.
_HOWS = (ALLOCATED, NAMED, MERGED, CONFLICT_SKIPPED, OVERWRITE)
_HOW_BYTE = {how: bytes([i]) for i, how in enumerate(_HOWS)}


def _insert_chunked(records: list[Any]) -> Callable[[txns.Txn], bool]:
    """A transaction body writing a chunked part record unless its head exists."""

    def insert(t: txns.Txn) -> bool:
        if t.lookup_raw([records[0].key]):
            return False
        t.upserts.extend(records)
        return True

    return insert


def _pack(old: Any, new: Any, how: str) -> bytes:
    """One choice as bytes: each key's length (2 bytes; a key is at most 6 KiB) and
    serialized protobuf, then the ``how`` as one byte.

    A blob, not a list of embedded entities holding two keys each: Datastore stores,
    reads and (on its emulators) lays out one value instead of 2,000 (measured: a
    batch's insert 40 -> 5 ms, its read back 18 -> 2 ms on the Datastore emulator).
    """
    old_bytes, new_bytes = key_bytes(old), key_bytes(new)
    return b"".join(
        (len(old_bytes).to_bytes(2, "big"), old_bytes,
         len(new_bytes).to_bytes(2, "big"), new_bytes, _HOW_BYTE[how])
    )  # fmt: skip


def _unpack(record: Any) -> list[tuple[Any, Any, str]]:
    """The choices of one part record, in the part's order."""
    props = record.properties
    if PACKED not in props:  # written before choices were packed: a list of pairs
        return [_unpair(value) for value in props["pairs"].array_value.values]
    data, at, items = props[PACKED].blob_value, 0, []
    while at < len(data):
        keys = []
        for _ in range(2):
            size = int.from_bytes(data[at : at + 2], "big")
            keys.append(Key.FromString(data[at + 2 : at + 2 + size]))
            at += 2 + size
        items.append((keys[0], keys[1], _HOWS[data[at]]))
        at += 1
    return items


def _unpair(value: Any) -> tuple[Any, Any, str]:
    pair = value.entity_value.properties
    return pair["old"].key_value, pair["new"].key_value, pair["how"].string_value


def _chunks(packed: list[bytes]) -> list[list[bytes]]:
    """``packed`` choices cut into runs of at most PART_RECORD_BYTES (at least one run)."""
    chunks: list[list[bytes]] = [[]]
    size = 0
    for item in packed:
        if chunks[-1] and size + len(item) > PART_RECORD_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += len(item)
    return chunks
