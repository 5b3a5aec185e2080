"""The App Engine v3 ("onestore") entity messages the managed export's records hold.

No maintained Python 3 package ships them with today's protobuf (the App Engine
bundled-services SDK pins urllib3 < 2), so they are declared here: only the
fields a managed export carries, with the numbers checked against files the
Datastore emulator's export writes (tests/integration/test_managed_export.py).
Groups are proto2 groups, as in the original messages.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "mapper_onestore_v3"

# (name, number, type, label, message type or None), per message; nested names use dots.
_OPT, _REQ, _REP = _F.LABEL_OPTIONAL, _F.LABEL_REQUIRED, _F.LABEL_REPEATED
_MESSAGES: dict[str, list[tuple[str, int, int, int, str | None]]] = {
    "PropertyValue": [
        ("int64Value", 1, _F.TYPE_INT64, _OPT, None),
        ("booleanValue", 2, _F.TYPE_BOOL, _OPT, None),
        ("stringValue", 3, _F.TYPE_BYTES, _OPT, None),
        ("doubleValue", 4, _F.TYPE_DOUBLE, _OPT, None),
        ("PointValue", 5, _F.TYPE_GROUP, _OPT, "PropertyValue.PointValue"),
        ("UserValue", 8, _F.TYPE_GROUP, _OPT, "PropertyValue.UserValue"),
        ("ReferenceValue", 12, _F.TYPE_GROUP, _OPT, "PropertyValue.ReferenceValue"),
    ],
    "PropertyValue.PointValue": [
        ("x", 6, _F.TYPE_DOUBLE, _OPT, None),
        ("y", 7, _F.TYPE_DOUBLE, _OPT, None),
    ],
    "PropertyValue.UserValue": [
        ("email", 9, _F.TYPE_STRING, _OPT, None),
        ("auth_domain", 10, _F.TYPE_STRING, _OPT, None),
        ("nickname", 11, _F.TYPE_STRING, _OPT, None),
        ("gaiaid", 18, _F.TYPE_INT64, _OPT, None),
        ("obfuscated_gaiaid", 19, _F.TYPE_STRING, _OPT, None),
        ("federated_identity", 21, _F.TYPE_STRING, _OPT, None),
        ("federated_provider", 22, _F.TYPE_STRING, _OPT, None),
    ],
    "PropertyValue.ReferenceValue": [
        ("app", 13, _F.TYPE_STRING, _OPT, None),
        ("name_space", 20, _F.TYPE_STRING, _OPT, None),
        ("PathElement", 14, _F.TYPE_GROUP, _REP, "PropertyValue.ReferenceValue.PathElement"),
        ("database_id", 23, _F.TYPE_STRING, _OPT, None),
    ],
    "PropertyValue.ReferenceValue.PathElement": [
        ("type", 15, _F.TYPE_STRING, _OPT, None),
        ("id", 16, _F.TYPE_INT64, _OPT, None),
        ("name", 17, _F.TYPE_STRING, _OPT, None),
    ],
    "Property": [
        ("meaning", 1, _F.TYPE_INT32, _OPT, None),
        ("meaning_uri", 2, _F.TYPE_STRING, _OPT, None),
        ("name", 3, _F.TYPE_STRING, _OPT, None),
        ("multiple", 4, _F.TYPE_BOOL, _OPT, None),
        ("value", 5, _F.TYPE_MESSAGE, _OPT, "PropertyValue"),
    ],
    "Path": [("Element", 1, _F.TYPE_GROUP, _REP, "Path.Element")],
    "Path.Element": [
        ("type", 2, _F.TYPE_STRING, _OPT, None),
        ("id", 3, _F.TYPE_INT64, _OPT, None),
        ("name", 4, _F.TYPE_STRING, _OPT, None),
    ],
    "Reference": [
        ("app", 13, _F.TYPE_STRING, _OPT, None),
        ("path", 14, _F.TYPE_MESSAGE, _OPT, "Path"),
        ("name_space", 20, _F.TYPE_STRING, _OPT, None),
        ("database_id", 23, _F.TYPE_STRING, _OPT, None),
    ],
    "EntityProto": [
        ("key", 13, _F.TYPE_MESSAGE, _OPT, "Reference"),
        ("property", 14, _F.TYPE_MESSAGE, _REP, "Property"),
        ("raw_property", 15, _F.TYPE_MESSAGE, _REP, "Property"),
        ("entity_group", 16, _F.TYPE_MESSAGE, _OPT, "Path"),
    ],
}


Fields = list[tuple[str, int, int, int, str | None]]


def declare(package: str, messages: dict[str, Fields]) -> dict[str, Any]:
    """Message classes for ``messages`` (proto2; nested names dotted, parents first).

    Every field is declared optional or repeated: a reader checks what it needs
    and names the record that lacks it, rather than protobuf refusing it unnamed.
    """
    proto = descriptor_pb2.FileDescriptorProto(name=f"{package}.proto", package=package)
    proto.syntax = "proto2"
    declared: dict[str, Any] = {}
    for dotted, fields in messages.items():
        parent, _, name = dotted.rpartition(".")
        holder = declared[parent].nested_type if parent else proto.message_type
        message = holder.add(name=name)
        declared[dotted] = message
        for field, number, kind, label, type_name in fields:
            # a group's field name is its type's name in lower case
            spec = _F(name=field.lower() if kind == _F.TYPE_GROUP else field, number=number)
            spec.type, spec.label = kind, label  # type: ignore[assignment]
            if type_name:
                spec.type_name = f".{package}.{type_name}"
            message.field.append(spec)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.{name}"))
        for name in messages
    }


_CLASSES = declare(_PACKAGE, _MESSAGES)
EntityProto = _CLASSES["EntityProto"]
PropertyValue = _CLASSES["PropertyValue"]

# Property.meaning values a managed export uses (the v1 API's `meaning` is the same number).
GD_WHEN = 7
GEORSS_POINT = 9
BLOB = 14
TEXT = 15
BYTESTRING = 16
ENTITY_PROTO = 19
USER = 20  # v1 only: a user is an entity value with meaning 20; v3 has a UserValue
ZLIB_BLOB = 22  # v1 only: v3 says BLOB with meaning_uri "ZLIB"
EMPTY_LIST = 24
