"""Raw Datastore entities covering every value type and its edge cases, for round-trip tests."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from google.cloud.datastore_v1.types import entity as entity_types

Entity = entity_types.Entity.pb()
Value = entity_types.Value.pb()
Key = entity_types.Key.pb()

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)

# (seconds, nanos) of timestamps at the edges Datastore allows, and in between.
TIMESTAMPS = {
    "ts_min": (-62135596800, 0),  # 0001-01-01T00:00:00Z
    "ts_max": (253402300799, 999999000),  # 9999-12-31T23:59:59.999999Z
    "ts_epoch": (0, 0),
    "ts_before_epoch": (-1, 999999000),  # 1969-12-31T23:59:59.999999Z
    "ts_leap_day_micros": (1709210096, 123456000),  # 2024-02-29T12:34:56.123456Z
}

DOUBLES = {
    "d_zero": 0.0,
    "d_negative_zero": -0.0,
    "d_fraction": 1.5,
    "d_third": 1 / 3,
    "d_integral": 3.0,
    "d_nan": math.nan,
    "d_inf": math.inf,
    "d_neg_inf": -math.inf,
    "d_max": 1.7976931348623157e308,
    "d_min_subnormal": 5e-324,
    "d_negative": -2.5e-10,
}

STRINGS = {
    "s_empty": "",
    "s_ascii": "hello",
    "s_unicode": "ñandú 中文 Ελληνικά",
    "s_astral": "😀 𝄞 \U0010ffff",
    "s_controls": 'line\nbreak\ttab\r\x00nul\x1f "quoted" \\back',
    "s_separators": "\u2028\u2029\ufeff",
}


def key(project: str, namespace: str, *path: Any, database: str = "") -> Any:
    """A raw Key; ``path`` alternates kind and id (int), name (str) or None (incomplete)."""
    pb = Key()
    pb.partition_id.project_id = project
    pb.partition_id.namespace_id = namespace
    pb.partition_id.database_id = database
    for kind, ident in zip(path[::2], path[1::2], strict=True):
        element = pb.path.add(kind=kind)
        if isinstance(ident, int):
            element.id = ident
        elif isinstance(ident, str):
            element.name = ident
    return pb


def value(setter: Callable[[Any], None], meaning: int = 0, excluded: bool = False) -> Any:
    """A raw Value built by ``setter``, with an optional meaning and index exclusion."""
    pb = Value()
    setter(pb)
    if meaning:
        pb.meaning = meaning
    if excluded:
        pb.exclude_from_indexes = True
    return pb


def scalar(field: str, data: Any, **options: Any) -> Any:
    return value(lambda v: setattr(v, field, data), **options)


def timestamp(seconds: int, nanos: int) -> Any:
    def set_timestamp(v: Any) -> None:
        v.timestamp_value.seconds, v.timestamp_value.nanos = seconds, nanos

    return value(set_timestamp)


def geo(latitude: float, longitude: float) -> Any:
    def set_geo(v: Any) -> None:
        v.geo_point_value.latitude, v.geo_point_value.longitude = latitude, longitude

    return value(set_geo)


def key_value(pb_key: Any) -> Any:
    return value(lambda v: v.key_value.CopyFrom(pb_key))


def entity_value(pb_entity: Any, **options: Any) -> Any:
    return value(lambda v: v.entity_value.CopyFrom(pb_entity), **options)


def array(*values: Any, **options: Any) -> Any:
    def set_array(v: Any) -> None:
        v.array_value.SetInParent()  # an empty array is a value too, distinct from null
        v.array_value.values.extend(values)

    return value(set_array, **options)


def entity(pb_key: Any | None = None, **properties: Any) -> Any:
    pb = Entity()
    if pb_key is not None:
        pb.key.CopyFrom(pb_key)
    for name, prop in properties.items():
        pb.properties[name].CopyFrom(prop)
    return pb


def _scalars() -> dict[str, Any]:
    props = {
        "null": value(lambda v: setattr(v, "null_value", 0)),
        "bool_true": scalar("boolean_value", True),
        "bool_false": scalar("boolean_value", False),
        "int_zero": scalar("integer_value", 0),
        "int_max": scalar("integer_value", INT64_MAX),
        "int_min": scalar("integer_value", INT64_MIN),
        "blob_empty": scalar("blob_value", b""),
        "blob_all_bytes": scalar("blob_value", bytes(range(256)), excluded=True),
        "geo_origin": geo(0.0, 0.0),
        "geo_negative_zero": geo(-0.0, -0.0),
        "geo_corner": geo(-90.0, 180.0),
        "geo_precise": geo(37.4219999, -122.0840575),
    }
    props |= {name: scalar("double_value", d) for name, d in DOUBLES.items()}
    props |= {name: scalar("string_value", s) for name, s in STRINGS.items()}
    props |= {name: timestamp(*sn) for name, sn in TIMESTAMPS.items()}
    return props


def _with_meanings() -> dict[str, Any]:
    # Meanings that Datastore stores and returns (both emulators checked): 15 long text,
    # 22 zlib-compressed blob (unindexed only), 7 GD_WHEN on an int, which it accepts
    # only for times outside the timestamp range. It refuses 9, 14, 19 and drops 16.
    compressed = b"x\x9c\x03\x00\x00\x00\x00\x01"
    return {
        "text_meaning": scalar("string_value", "long text " * 200, meaning=15, excluded=True),
        "zlib_meaning": scalar("blob_value", compressed, meaning=22, excluded=True),
        "when_meaning": scalar("integer_value", 253402300800000000, meaning=7),
    }


def _keys(project: str, namespace: str) -> dict[str, Any]:
    return {
        "key_id": key_value(key(project, namespace, "Target", 1)),
        "key_name": key_value(key(project, namespace, "Target", "name-😀")),
        "key_max_id": key_value(key(project, namespace, "Target", INT64_MAX)),
        "key_with_parent": key_value(key(project, namespace, "Parent", "p", "Child", 7)),
        "key_default_namespace": key_value(key(project, "", "Target", 2)),
        "key_other_namespace": key_value(key(project, "other-ns", "Target", 3)),
        "key_other_database": key_value(key(project, namespace, "Target", 4, database="db-2")),
        "key_other_project": key_value(key("other-project", namespace, "Target", 5)),
    }


def _structures(project: str, namespace: str) -> dict[str, Any]:
    keyed = entity(key(project, namespace, "Inner", 9), label=scalar("string_value", "keyed"))
    keyless = entity(None, n=scalar("integer_value", 1), when=timestamp(*TIMESTAMPS["ts_max"]))
    nested = entity(None, inner=entity_value(keyless), tags=array(scalar("string_value", "a")))
    partial_key = entity(key(project, namespace, "Inner", None), x=scalar("boolean_value", True))
    return {
        "array_empty": array(),
        "array_mixed": array(
            scalar("integer_value", 1),
            scalar("double_value", 1.0),
            scalar("string_value", "1"),
            value(lambda v: setattr(v, "null_value", 0)),
            key_value(key(project, namespace, "Target", 1)),
            geo(1.0, 2.0),
            timestamp(*TIMESTAMPS["ts_min"]),
            scalar("blob_value", b"\x00"),
            entity_value(keyless),
        ),
        "array_excluded_per_value": array(
            scalar("string_value", "indexed"),
            scalar("string_value", "not indexed", excluded=True),
            scalar("double_value", -0.0, excluded=True),
        ),
        "array_of_entities": array(entity_value(keyed), entity_value(nested, excluded=True)),
        "entity_keyed": entity_value(keyed),
        "entity_keyless": entity_value(keyless, excluded=True),
        "entity_empty": entity_value(Entity()),
        "entity_nested": entity_value(nested),
        "entity_incomplete_key": entity_value(partial_key),
    }


def all_types_entities(project: str, namespace: str) -> list[Any]:
    """Raw ``google.datastore.v1.Entity`` messages holding every value type and edge case.

    Entity keys live in ``project``/``namespace`` (default database) so the set
    can be written to an emulator; key *values* also point at another
    namespace, database and project, as stored data may. Both emulators store
    and return every property of this set bit for bit (checked one by one).
    """
    everything = {**_scalars(), **_with_meanings(), **_keys(project, namespace)}
    everything |= _structures(project, namespace)
    return [
        entity(key(project, namespace, "AllTypes", 1), **everything),
        entity(
            key(project, namespace, "AllTypes", "named-ñ-😀"),
            **{"dotted.name": scalar("string_value", "x"), "ünïcode name": array()},
        ),
        entity(key(project, namespace, "Parent", "p", "AllTypes", INT64_MAX)),
        entity(
            key(project, namespace, "Parent", 1, "Middle", "m", "AllTypes", 2),
            only=scalar("integer_value", INT64_MIN),
        ),
    ]
