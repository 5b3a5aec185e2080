"""Exact conversion between v3 ``EntityProto`` records and Datastore v1 ``Entity`` messages.

The v1 API is itself a view of the v3 model, and the conversion follows it:
a timestamp is an int64 of microseconds with meaning GD_WHEN (one outside
0001..9999 stays an integer with meaning 7); a blob is a byte string with
meaning BLOB (unindexed) or BYTESTRING (indexed), BLOB + "ZLIB" is v1's
meaning 22; an embedded entity is a serialised EntityProto with meaning
ENTITY_PROTO; an empty list is a null with meaning EMPTY_LIST; a user is v1's
entity value with meaning 20. A list is one property per value (``multiple``),
indexed values in ``property``, unindexed ones in ``raw_property``: read back,
the indexed values come first, which is also the order Datastore stores.
"""

from __future__ import annotations

from typing import Any

from google.cloud.datastore_v1.types import entity as entity_types

from mapper.dump.managed import entity_v3 as v3
from mapper.errors import DumpFormatError

Entity = entity_types.Entity.pb()
Key = entity_types.Key.pb()

#: The microseconds a v1 timestamp can hold: 0001-01-01 to 9999-12-31T23:59:59.999999.
MIN_MICROS, MAX_MICROS = -62_135_596_800_000_000, 253_402_300_799_999_999
#: v1 user entity properties, by UserValue field (all stored unindexed).
_USER_FIELDS = {
    "email": "email",
    "auth_domain": "auth_domain",
    "user_id": "obfuscated_gaiaid",
    "federated_identity": "federated_identity",
    "federated_provider": "federated_provider",
}


class ConversionError(ValueError):
    """A record that no v1 entity can express (the reader names the file and offset)."""


def parse_entity(record: bytes) -> Any:
    """The v1 ``Entity`` a managed export record holds."""
    try:
        proto = v3.EntityProto.FromString(record)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError, or worse: not an entity
        raise ConversionError(f"not an EntityProto: {e}") from e
    return entity_from_v3(proto)


def entity_from_v3(proto: Any, entity: Any = None) -> Any:
    entity = Entity() if entity is None else entity
    if proto.key.path.element:
        _key_from_v3(proto.key, proto.key.path.element, entity.key)
    properties = entity.properties
    for excluded, props in ((False, proto.property), (True, proto.raw_property)):
        for prop in props:
            name = prop.name
            if prop.multiple:
                target = properties[name]
                if target.WhichOneof("value_type") not in (None, "array_value"):
                    raise ConversionError(f"property {name!r} is both a list and a single value")
                _value_from_v3(prop, excluded, target.array_value.values.add())
            elif name in properties:
                raise ConversionError(f"property {name!r} appears twice")
            else:
                _value_from_v3(prop, excluded, properties[name])
    return entity


def _key_from_v3(reference: Any, elements: Any, key: Any) -> None:
    partition = key.partition_id
    partition.project_id = reference.app.rpartition("~")[2]  # "s~app" names the project "app"
    partition.namespace_id = reference.name_space
    partition.database_id = reference.database_id
    for element in elements:
        item = key.path.add(kind=element.type)
        if element.HasField("id"):
            item.id = element.id
        elif element.HasField("name"):
            item.name = element.name


def _value_from_v3(prop: Any, excluded: bool, value: Any) -> None:
    pv, meaning = prop.value, prop.meaning
    field = _which(pv)
    if field == "int64Value":
        number = pv.int64Value
        if meaning == v3.GD_WHEN and MIN_MICROS <= number <= MAX_MICROS:
            seconds, micros = divmod(number, 1_000_000)
            value.timestamp_value.seconds, value.timestamp_value.nanos = seconds, micros * 1000
            meaning = 0
        else:
            value.integer_value = number
    elif field == "stringValue":
        meaning = _bytes_from_v3(pv.stringValue, meaning, prop.meaning_uri, value)
    elif field == "doubleValue":
        value.double_value = pv.doubleValue
    elif field == "booleanValue":
        value.boolean_value = pv.booleanValue
    elif field == "referencevalue":
        ref = pv.referencevalue
        _key_from_v3(ref, ref.pathelement, value.key_value)
    elif field == "pointvalue":
        value.geo_point_value.latitude = pv.pointvalue.x
        value.geo_point_value.longitude = pv.pointvalue.y
        meaning = 0 if meaning == v3.GEORSS_POINT else meaning
    elif field == "uservalue":
        _user_from_v3(pv.uservalue, value)
        meaning = v3.USER
    elif meaning == v3.EMPTY_LIST:
        value.array_value.SetInParent()
        meaning = 0
    else:
        value.null_value = 0
    if meaning:
        value.meaning = meaning
    if excluded:
        value.exclude_from_indexes = True


_FIELDS = ("int64Value", "stringValue", "doubleValue", "booleanValue")
_GROUPS = ("referencevalue", "pointvalue", "uservalue")


def _which(pv: Any) -> str | None:
    """The one field a PropertyValue sets (None: null); two set is refused."""
    found = [name for name in _FIELDS + _GROUPS if pv.HasField(name)]
    if len(found) > 1:
        raise ConversionError(f"a value sets {found!r}, not one of them")
    return found[0] if found else None


def _bytes_from_v3(data: bytes, meaning: int, uri: str, value: Any) -> int:
    """Fill ``value`` from a v3 byte string; returns the v1 meaning it keeps."""
    if meaning == v3.ENTITY_PROTO:
        try:
            inner = v3.EntityProto.FromString(data)
        except Exception as e:  # noqa: BLE001 - a DecodeError
            raise ConversionError(f"an embedded entity is not an EntityProto: {e}") from e
        value.entity_value.SetInParent()
        entity_from_v3(inner, value.entity_value)
        return 0
    if meaning in (v3.BLOB, v3.BYTESTRING):
        value.blob_value = data
        return v3.ZLIB_BLOB if meaning == v3.BLOB and uri == "ZLIB" else 0
    try:
        value.string_value = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConversionError(f"a text value is not UTF-8: {e}") from e
    return meaning


def _user_from_v3(user: Any, value: Any) -> None:
    entity = value.entity_value
    entity.SetInParent()
    for name, field in _USER_FIELDS.items():
        if user.HasField(field):
            prop = entity.properties[name]
            prop.string_value, prop.exclude_from_indexes = getattr(user, field), True


# -- v1 -> v3 --------------------------------------------------------------------


def entity_to_v3(entity: Any) -> Any:
    """The v3 ``EntityProto`` the managed import reads back as ``entity``."""
    proto = v3.EntityProto()
    _fill_v3(entity, proto)
    return proto


def _fill_v3(entity: Any, proto: Any) -> None:
    key = proto.key
    key.app = ""  # present though empty: the managed import indexes a keyless entity so
    key.path.SetInParent()
    proto.entity_group.SetInParent()
    if entity.key.path:
        _key_to_v3(entity.key, key, key.path.element)
        root = entity.key.path[0]
        if root.id or root.name:
            item = proto.entity_group.element.add(type=root.kind)
            _set_id(root, item)
    for name in sorted(entity.properties):
        value = entity.properties[name]
        if value.WhichOneof("value_type") == "array_value":
            values = value.array_value.values
            if not values:
                proto.property.add(
                    name=name, meaning=v3.EMPTY_LIST, multiple=False
                ).value.SetInParent()
            for item in values:
                _property_to_v3(proto, name, item, multiple=True)
        else:
            _property_to_v3(proto, name, value, multiple=False)


def _set_id(element: Any, item: Any) -> None:
    which = element.WhichOneof("id_type")
    if which == "id":
        item.id = element.id
    elif which == "name":
        item.name = element.name


def _key_to_v3(key: Any, reference: Any, elements: Any) -> None:
    partition = key.partition_id
    reference.app = partition.project_id
    if partition.namespace_id:
        reference.name_space = partition.namespace_id
    if partition.database_id:
        reference.database_id = partition.database_id
    for element in key.path:
        _set_id(element, elements.add(type=element.kind))


def _property_to_v3(proto: Any, name: str, value: Any, multiple: bool) -> None:
    props = proto.raw_property if value.exclude_from_indexes else proto.property
    prop = props.add(name=name, multiple=multiple)
    pv, meaning = prop.value, value.meaning
    pv.SetInParent()
    which = value.WhichOneof("value_type")
    if which == "integer_value":
        pv.int64Value = value.integer_value
    elif which == "string_value":
        pv.stringValue = value.string_value.encode("utf-8")
    elif which == "timestamp_value":
        ts = value.timestamp_value
        pv.int64Value, meaning = ts.seconds * 1_000_000 + ts.nanos // 1000, v3.GD_WHEN
    elif which == "boolean_value":
        pv.booleanValue = value.boolean_value
    elif which == "double_value":
        pv.doubleValue = value.double_value
    elif which == "blob_value":
        pv.stringValue = value.blob_value
        if meaning == v3.ZLIB_BLOB:
            meaning, prop.meaning_uri = v3.BLOB, "ZLIB"
        elif not meaning:
            meaning = v3.BLOB if value.exclude_from_indexes else v3.BYTESTRING
    elif which == "key_value":
        ref = pv.referencevalue
        _key_to_v3(value.key_value, ref, ref.pathelement)
    elif which == "geo_point_value":
        point = pv.pointvalue
        point.x, point.y = value.geo_point_value.latitude, value.geo_point_value.longitude
        meaning = v3.GEORSS_POINT
    elif which == "entity_value":
        meaning = _embedded_to_v3(value.entity_value, meaning, pv)
    elif which == "array_value":
        raise ConversionError(f"property {name!r}: a list inside a list has no v3 form")
    if meaning:
        prop.meaning = meaning


def _embedded_to_v3(entity: Any, meaning: int, pv: Any) -> int:
    if (
        meaning == v3.USER
        and not entity.HasField("key")
        and set(entity.properties) <= set(_USER_FIELDS)
    ):
        user = pv.uservalue
        user.gaiaid = 0
        for name, field in _USER_FIELDS.items():
            if name in entity.properties:
                setattr(user, field, entity.properties[name].string_value)
        return 0
    inner = v3.EntityProto()
    _fill_v3(entity, inner)
    pv.stringValue = inner.SerializeToString()
    return v3.ENTITY_PROTO


def serialize_entity(entity: Any) -> bytes:
    """One managed export record: ``entity`` as a v3 EntityProto."""
    try:
        return entity_to_v3(entity).SerializeToString()  # type: ignore[no-any-return]
    except ConversionError:
        raise
    except (ValueError, TypeError) as e:
        raise DumpFormatError(f"cannot write the entity as an EntityProto: {e}") from e
