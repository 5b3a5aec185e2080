"""The managed export's metadata: the overall file (a log of two records) and one
``.export_metadata`` message per folder (one kind and namespace selection).

The overall file's first record is the format marker ``b"3"``; its second lists
each folder: the selection, the path of its metadata file, its entity count and
its bytes. A folder's metadata names its output files. Field numbers are those
of the files the Datastore emulator writes (no public definition exists).
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor_pb2 import FieldDescriptorProto as _F

from mapper.dump.managed.entity_v3 import declare

OVERALL_SUFFIX = ".overall_export_metadata"
FOLDER_SUFFIX = ".export_metadata"
#: The overall file's first record, as the emulator writes it; others are refused.
FORMAT_MARKER = b"3"
#: Selection modes in the overall file: one kind or all; default namespace, one, or all.
ONE_KIND, ALL_KINDS = 1, 2
DEFAULT_NAMESPACE, ONE_NAMESPACE, ALL_NAMESPACES = 1, 2, 3

_O, _R = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_CLASSES = declare(
    "mapper_managed_export",
    {
        "Overall": [("folder", 1, _F.TYPE_MESSAGE, _R, "Folder")],
        "Folder": [
            ("selection", 1, _F.TYPE_MESSAGE, _O, "Selection"),
            ("metadata_path", 2, _F.TYPE_STRING, _O, None),
            ("count", 3, _F.TYPE_INT64, _O, None),
            ("bytes", 4, _F.TYPE_INT64, _O, None),
        ],
        "Selection": [
            ("kinds", 1, _F.TYPE_INT32, _O, None),
            ("kind", 2, _F.TYPE_STRING, _O, None),
            ("namespaces", 3, _F.TYPE_INT32, _O, None),
            ("namespace", 4, _F.TYPE_STRING, _O, None),
        ],
        "FolderMetadata": [
            ("run", 1, _F.TYPE_MESSAGE, _O, "Run"),
            ("output", 2, _F.TYPE_MESSAGE, _R, "Output"),
        ],
        "Run": [
            ("stamp", 1, _F.TYPE_STRING, _O, None),
            ("start_micros", 2, _F.TYPE_INT64, _O, None),
            ("end_micros", 3, _F.TYPE_INT64, _O, None),
        ],
        "Output": [
            ("kind", 1, _F.TYPE_STRING, _O, None),
            ("file", 2, _F.TYPE_STRING, _O, None),
        ],
    },
)
Overall: Any = _CLASSES["Overall"]
Folder: Any = _CLASSES["Folder"]
FolderMetadata: Any = _CLASSES["FolderMetadata"]


def folder_name(kind: str | None, namespace: str | None) -> str:
    """The folder of a selection, as the export names it (``namespace_x/kind_K``)."""
    if namespace is None:
        ns_part = "all_namespaces"
    else:
        ns_part = f"namespace_{namespace}" if namespace else "default_namespace"
    return f"{ns_part}/{'all_kinds' if kind is None else f'kind_{kind}'}"


def folder(kind: str | None, namespace: str | None, count: int, size: int) -> Any:
    """The overall file's entry for one folder."""
    entry = Folder(count=count, bytes=size)
    selection = entry.selection
    selection.kinds, selection.kind = (ALL_KINDS, "") if kind is None else (ONE_KIND, kind)
    if namespace is None:
        selection.namespaces, selection.namespace = ALL_NAMESPACES, ""
    else:
        selection.namespaces = ONE_NAMESPACE if namespace else DEFAULT_NAMESPACE
        selection.namespace = namespace
    name = folder_name(kind, namespace)
    entry.metadata_path = f"{name}/{name.replace('/', '_')}{FOLDER_SUFFIX}"
    return entry
