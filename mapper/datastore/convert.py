"""Entities and keys to raw protobufs, without proto-plus: the hot path of every put.

``google.cloud.datastore.helpers.entity_to_protobuf`` builds proto-plus
wrappers and deep-copies every key's path; profiling a touch job showed it
taking about two thirds of the Python time per entity. These functions write
the raw (upb) messages directly for the common value types and hand anything
else (meanings, embedded entities, dicts) to the library, so the bytes are the
library's either way (checked by tests/unit/test_convert.py).
"""

from __future__ import annotations

import datetime
from typing import Any

from google.cloud import datastore
from google.cloud._helpers import _datetime_to_pb_timestamp
from google.cloud.datastore import helpers

from mapper.datastore.rpc import Entity, Key


class _Unusual(Exception):
    """A value the fast path leaves to the library."""


def key_to_pb(key: datastore.Key, into: Any | None = None) -> Any:
    """``key.to_protobuf()`` as a raw message (no deep copy of the path)."""
    pb = Key() if into is None else into
    pb.partition_id.project_id = key.project
    if key.database:
        pb.partition_id.database_id = key.database
    if key.namespace:
        pb.partition_id.namespace_id = key.namespace
    flat = key.flat_path
    for i in range(0, len(flat), 2):
        element = pb.path.add(kind=flat[i])
        if i + 1 < len(flat):
            ident = flat[i + 1]
            if isinstance(ident, str):
                element.name = ident
            else:
                element.id = ident
    return pb


def entity_to_pb(entity: datastore.Entity) -> Any:
    """``helpers.entity_to_protobuf(entity)`` as a raw message, faster for plain entities."""
    if entity._meanings:
        return helpers.entity_to_protobuf(entity)._pb
    pb = Entity()
    if entity.key is not None:
        key_to_pb(entity.key, pb.key)
    excluded = entity.exclude_from_indexes
    try:
        for name, value in entity.items():
            value_pb = pb.properties[name]
            if isinstance(value, list):
                array = value_pb.array_value
                array.SetInParent()
                for item in value:
                    item_pb = array.values.add()
                    set_value(item_pb, item)
                    if name in excluded:
                        item_pb.exclude_from_indexes = True
            else:
                set_value(value_pb, value)
                if name in excluded:
                    value_pb.exclude_from_indexes = True
    except _Unusual:
        return helpers.entity_to_protobuf(entity)._pb
    return pb


def set_value(value_pb: Any, value: Any) -> None:
    """Set a raw Value from a Python value, as the library does; _Unusual for the rest."""
    # Order as in helpers._pb_attr_value: bool before int, datetime first.
    if isinstance(value, datetime.datetime):
        value_pb.timestamp_value.CopyFrom(_datetime_to_pb_timestamp(value))
    elif isinstance(value, datastore.Key):
        key_to_pb(value, value_pb.key_value)
    elif isinstance(value, bool):
        value_pb.boolean_value = value
    elif isinstance(value, float):
        value_pb.double_value = value
    elif isinstance(value, int):
        value_pb.integer_value = value
    elif isinstance(value, str):
        value_pb.string_value = value
    elif isinstance(value, bytes):
        value_pb.blob_value = value
    elif value is None:
        value_pb.null_value = 0
    elif isinstance(value, helpers.GeoPoint):
        value_pb.geo_point_value.latitude = value.latitude
        value_pb.geo_point_value.longitude = value.longitude
    else:  # embedded entities, dicts, nested lists: the library's rules
        raise _Unusual(type(value))
