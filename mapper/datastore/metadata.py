"""Metadata queries: the namespaces, kinds and properties a store holds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from google.api_core import exceptions as core_exceptions

from mapper.datastore.query import kind_query, results
from mapper.datastore.rpc import Store
from mapper.errors import ConfigurationError


def is_reserved_kind(kind: str) -> bool:
    """``__kind__``, ``__Stat_Total__`` ...: Datastore's own kinds, never user data."""
    return kind.startswith("__") and kind.endswith("__")


def list_namespaces(store: Store) -> list[str]:
    """Every namespace holding an entity; ``""`` is the default namespace."""
    names = []
    for key in _keys(store, "__namespace__", ""):
        element = key.path[-1]
        names.append(element.name if element.WhichOneof("id_type") == "name" else "")
    return sorted(names)


def list_kinds(store: Store, namespace: str) -> list[str]:
    """The user kinds in ``namespace`` (reserved ``__*__`` kinds left out)."""
    kinds = (key.path[-1].name for key in _keys(store, "__kind__", namespace))
    return sorted(kind for kind in kinds if not is_reserved_kind(kind))


def _keys(store: Store, kind: str, namespace: str) -> Iterator[Any]:
    try:
        yield from (e.key for e in results(store, kind_query(kind, keys_only=True), namespace))
    except (core_exceptions.InvalidArgument, core_exceptions.MethodNotImplemented) as e:
        raise ConfigurationError(
            f"this store does not answer {kind} metadata queries ({e.message}); "
            "the Firestore emulator in Datastore mode has none: name the kinds explicitly"
        ) from e
