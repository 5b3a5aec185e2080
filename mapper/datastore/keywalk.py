"""Every key inside an entity: its own, parents, key values in lists and embedded entities."""

from __future__ import annotations

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


def key_sites(entity: Any) -> tuple[list[Any], list[Any]]:
    """(every Value holding a key reference, every embedded entity's key) in ``entity``'s
    properties, at any depth: list items and embedded entities' values too, in order.

    The one walker every key search below is built on: one pass, no generators (an
    import walks each entity several times, and most values hold no key).
    """
    refs: list[Any] = []
    embedded: list[Any] = []
    pending = list(entity.properties.values())
    pending.reverse()
    while pending:
        value = pending.pop()
        which = value.WhichOneof("value_type")
        if which == "key_value":
            refs.append(value)
        elif which == "array_value":
            pending.extend(value.array_value.values[::-1])
        elif which == "entity_value":
            inner = value.entity_value
            if inner.HasField("key"):
                embedded.append(inner.key)
            pending.extend(list(inner.properties.values())[::-1])
    return refs, embedded


def reference_values(entity: Any) -> list[Any]:
    """Every Value holding a key reference (``key_value``), at any depth."""
    return key_sites(entity)[0]


def embedded_keys(entity: Any) -> list[Any]:
    """The keys of embedded entities (at any depth) that have one."""
    return key_sites(entity)[1]


def value_keys(entity: Any) -> list[Any]:
    """Every key *value* in ``entity``'s properties, at any depth (not its own key).

    Keys of embedded entities are included: they are references too.
    """
    refs, embedded = key_sites(entity)
    return [value.key_value for value in refs] + embedded


def move_partitions(entity: Any, moves: dict[Partition, Partition]) -> None:
    """Move the entity's key and every key value from one partition to another, in place.

    Keys in a partition ``moves`` does not name (another project's, say) stay.
    """
    for key in (entity.key, *value_keys(entity)):
        target = moves.get(partition_of(key))
        if target is not None:
            set_partition(key, target)
