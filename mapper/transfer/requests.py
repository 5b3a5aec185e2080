"""One parser for export and import requests: the CLI's options and the HTTP API's JSON.

Both front ends hand over a flat mapping of field names to values; what a field
means, its default and its checks live here (and in the spec dataclasses), so
the CLI and the API cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mapper.errors import ConfigurationError
from mapper.transfer.export import ExportSpec
from mapper.transfer.importer import ImportSpec
from mapper.transfer.options import RemapOptions, parse_options

EXPORT_FIELDS = frozenset(
    {"out", "kinds", "namespaces", "namespace", "all_namespaces", "filters"}
    | {"shards", "batch_size", "id", "format", "max_rate"}
)
#: Remap option fields by their request name (the HTTP API's, the CLI's flag without
#: dashes), and the parse_options argument each one fills.
REMAP_FIELDS = {
    "natural_key": "natural_keys",
    "rename_names": "rename_names",
    "dangling": "dangling",
    "on_conflict": "on_conflict",
    "default": "defaults",
    "rename": "renames",
    "drop": "drops",
}
IMPORT_FIELDS = frozenset(
    {"source", "mode", "namespace", "move_project", "dry_run", "keep_names"}
    | set(REMAP_FIELDS)
    | {"shards", "batch_size", "id", "max_rate"}
)


def export_spec(fields: Mapping[str, Any]) -> ExportSpec:
    """An ExportSpec from request fields (None or absent: the spec's default)."""
    given = _given(fields, EXPORT_FIELDS, "export")
    namespaces = given.pop("namespaces", None)
    namespace = given.pop("namespace", None)
    if given.pop("all_namespaces", False):
        if namespaces or namespace is not None:
            raise ConfigurationError("use --namespace or --all-namespaces, not both")
        namespaces = ["*"]
    elif namespace is not None:
        if namespaces:
            raise ConfigurationError("give 'namespace' or 'namespaces', not both")
        namespaces = [namespace]
    filters = [_pair(f) for f in given.pop("filters", ())]
    kinds = tuple(given.pop("kinds", ()))
    return ExportSpec(
        **given, kinds=kinds, namespaces=list(namespaces) if namespaces else None, filters=filters
    ).validate()


def import_spec(fields: Mapping[str, Any]) -> ImportSpec:
    """An ImportSpec from request fields; remap options are refused in keep mode."""
    given = _given(fields, IMPORT_FIELDS, "import")
    asked = [k for k in given if k in REMAP_FIELDS]
    remap = {REMAP_FIELDS[k]: given.pop(k) for k in asked}
    if given.pop("keep_names", False) and remap.get("rename_names") is not None:
        raise ConfigurationError("use --keep-names or --rename-names, not both")
    mode = given.get("mode", ImportSpec.mode)
    if mode != "remap" and remap:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in sorted(asked))
        raise ConfigurationError(f"remap options ({flags}) need --mode remap, not {mode!r}")
    options = parse_options(**remap) if remap else RemapOptions()
    for flag in ("move_project", "dry_run"):
        if flag in given:
            given[flag] = bool(given[flag])
    return ImportSpec(**given, options=options).validate()


def _given(fields: Mapping[str, Any], allowed: frozenset[str], what: str) -> dict[str, Any]:
    """The fields that carry a value; unknown names are refused, naming them."""
    unknown = sorted(set(fields) - allowed)
    if unknown:
        raise ConfigurationError(f"unknown field(s) for {what}: {unknown}")
    return {k: v for k, v in fields.items() if v is not None and not _empty_sequence(v)}


def _empty_sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and not value


def _pair(item: Any) -> tuple[str, Any]:
    """A filter: ``[PROP, VALUE]`` (JSON) or ``(PROP, VALUE)``."""
    if isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str):
        return item[0], item[1]
    raise ConfigurationError(f"a filter is [PROP, VALUE], got {item!r}")
