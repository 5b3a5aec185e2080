"""Keys: one serialisation (bytes), one printed form, and Datastore's key order."""

from __future__ import annotations

from typing import Any

from google.cloud.datastore_v1.types import entity as _entity_types

Key = _entity_types.Key.pb()


def key_bytes(key: Any) -> bytes:
    """The one serialisation of a raw key: deterministic, so equal keys give equal bytes.

    Used as a dict key for lookups, in records (checkpoints, key maps) and in
    shard ranges; ``key_from_bytes`` reads it back.
    """
    return key.SerializeToString(deterministic=True)


def key_order(key: Any) -> tuple[Any, ...]:
    """Sort key matching Datastore's key order (ids before names, parents first)."""
    parts: list[Any] = []
    for element in key.path:
        which = element.WhichOneof("id_type")
        if which == "id":
            ident: tuple[Any, ...] = (1, element.id, b"")
        elif which == "name":
            ident = (2, 0, element.name.encode("utf-8"))
        else:
            ident = (0, 0, b"")
        parts.append((element.kind.encode("utf-8"), *ident))
    return tuple(parts)


def key_from_bytes(data: bytes | None) -> Any | None:
    """The key ``key_bytes`` wrote (None for no bytes: an open range end)."""
    return None if not data else Key.FromString(data)


def key_repr(key: Any) -> str:
    """The one printed form of a raw key, as ndb prints keys.

    ``Key('Parent', 1, 'Child', 'x', namespace='n')``: used in errors, status
    (checkpoints, failed keys) and cleanup samples alike.
    """
    parts = []
    for element in key.path:
        which = element.WhichOneof("id_type")
        parts += [repr(element.kind), repr(getattr(element, which)) if which else "None"]
    for label in ("namespace", "database"):
        if value := getattr(key.partition_id, f"{label}_id"):
            parts.append(f"{label}={value!r}")
    return f"Key({', '.join(parts)})"
