"""Every key inside an entity: its own, parents, key values in lists and embedded entities."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

#: Where the partition of a key lives: (project, database, namespace).
Partition = tuple[str, str, str]


def partition_of(key: Any) -> Partition:
    p = key.partition_id
    return (p.project_id, p.database_id, p.namespace_id)


def set_partition(key: Any, partition: Partition) -> None:
    project, database, namespace = partition
    key.partition_id.project_id = project
    key.partition_id.database_id = database
    key.partition_id.namespace_id = namespace


def is_complete(key: Any) -> bool:
    """True when every element of ``key``'s path has an id or a name (it can be looked up)."""
    return bool(key.path) and all(e.WhichOneof("id_type") is not None for e in key.path)


def values(entity: Any) -> Iterator[Any]:
    """Every Value in ``entity``'s properties, at any depth: list items and the values
    of embedded entities too. The one walker every key search below is built on."""
    for value in entity.properties.values():
        yield from _walk(value)


def _walk(value: Any) -> Iterator[Any]:
    yield value
    which = value.WhichOneof("value_type")
    if which == "array_value":
        for item in value.array_value.values:
            yield from _walk(item)
    elif which == "entity_value":
        yield from values(value.entity_value)


def reference_values(entity: Any) -> Iterator[Any]:
    """Every Value holding a key reference (``key_value``), at any depth."""
    return (v for v in values(entity) if v.WhichOneof("value_type") == "key_value")


def embedded_keys(entity: Any) -> Iterator[Any]:
    """The keys of embedded entities (at any depth) that have one."""
    for value in values(entity):
        if value.WhichOneof("value_type") == "entity_value" and value.entity_value.HasField("key"):
            yield value.entity_value.key


def value_keys(entity: Any) -> Iterator[Any]:
    """Every key *value* in ``entity``'s properties, at any depth (not its own key).

    Keys of embedded entities are included: they are references too.
    """
    for value in values(entity):
        which = value.WhichOneof("value_type")
        if which == "key_value":
            yield value.key_value
        elif which == "entity_value" and value.entity_value.HasField("key"):
            yield value.entity_value.key


def move_partitions(entity: Any, moves: dict[Partition, Partition]) -> None:
    """Move the entity's key and every key value from one partition to another, in place.

    Keys in a partition ``moves`` does not name (another project's, say) stay.
    """
    for key in (entity.key, *value_keys(entity)):
        target = moves.get(partition_of(key))
        if target is not None:
            set_partition(key, target)
