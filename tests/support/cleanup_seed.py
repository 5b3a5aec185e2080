"""Seeding and snapshots for the cleanup tests: raw entities, compared byte for byte."""

from __future__ import annotations

from typing import Any

from google.cloud import datastore

from mapper.cleanup.plan import scan
from mapper.datastore.keys import key_bytes
from mapper.engine.runtime import Runtime

#: Every user kind the cleanup tests seed (tests.support.cleanup_models plus stale ones).
KINDS = ("Person", "Order", "Note", "Line", "Bag", "OldThing", "Legacy")


def put(
    client: datastore.Client,
    kind: str,
    n: int,
    parent: datastore.Key | None = None,
    unindexed: tuple[str, ...] = (),
    **props: Any,
) -> list[datastore.Key]:
    """Put ``n`` entities of ``kind``; a callable prop value is called with the index."""
    entities = []
    for i in range(n):
        key = client.key(kind, parent=parent) if parent else client.key(kind)
        entity = datastore.Entity(key, exclude_from_indexes=unindexed)
        entity.update({k: (v(i) if callable(v) else v) for k, v in props.items()})
        entities.append(entity)
    for start in range(0, n, 500):
        client.put_multi(entities[start : start + 500])
    return [e.key for e in entities]


def snapshot(runtime: Runtime, namespace: str, *kinds: str) -> dict[bytes, bytes]:
    """Serialized key -> serialized entity of every entity of ``kinds``."""
    return {
        key_bytes(entity.key): entity.SerializeToString(deterministic=True)
        for kind in kinds or KINDS
        for entity in scan(runtime, kind, namespace)
    }


def only(state: dict[bytes, bytes], *kinds: str) -> dict[bytes, bytes]:
    """The part of a snapshot that is of ``kinds``."""
    from mapper.datastore.rpc import Key

    return {k: v for k, v in state.items() if Key.FromString(k).path[-1].kind in kinds}


def without(entity_bytes: bytes, *names: str) -> bytes:
    """A serialized entity with properties ``names`` removed, all else unchanged."""
    from mapper.datastore.rpc import Entity

    entity = Entity.FromString(entity_bytes)
    for name in names:
        entity.properties.pop(name, None)
    return entity.SerializeToString(deterministic=True)


def kb(key: datastore.Key) -> bytes:
    """A google-cloud-datastore key as a snapshot's key."""
    from mapper.datastore.convert import key_to_pb

    return key_bytes(key_to_pb(key))


def entity(state: dict[bytes, bytes], key: datastore.Key) -> Any:
    """The raw entity a snapshot holds for a google-cloud-datastore key."""
    from mapper.datastore.rpc import Entity

    return Entity.FromString(state[kb(key)])
