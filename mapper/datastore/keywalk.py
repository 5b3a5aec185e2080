"""Every key inside an entity: its own, parents, key values in lists and embedded entities."""

from __future__ import annotations

from collections.abc import Callable, Iterator
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


def value_keys(entity: Any) -> Iterator[Any]:
    """Every key *value* in ``entity``'s properties, at any depth (not its own key).

    Keys of embedded entities are included: they are references too.
    """
    for value in entity.properties.values():
        yield from _keys_in_value(value)


def _keys_in_value(value: Any) -> Iterator[Any]:
    which = value.WhichOneof("value_type")
    if which == "key_value":
        yield value.key_value
    elif which == "array_value":
        for item in value.array_value.values:
            yield from _keys_in_value(item)
    elif which == "entity_value":
        embedded = value.entity_value
        if embedded.HasField("key"):
            yield embedded.key
        yield from value_keys(embedded)


def move_partitions(entity: Any, moves: dict[Partition, Partition]) -> None:
    """Move the entity's key and every key value from one partition to another, in place.

    Keys in a partition ``moves`` does not name (another project's, say) stay.
    """
    for key in (entity.key, *value_keys(entity)):
        target = moves.get(partition_of(key))
        if target is not None:
            set_partition(key, target)


def map_keys(entity: Any, fn: Callable[[Any], None]) -> None:
    """Call ``fn`` on the entity's key and every key value (each may be changed in place)."""
    fn(entity.key)
    for key in value_keys(entity):
        fn(key)
