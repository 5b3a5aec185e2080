"""Starting and reading jobs from JSON: user mappers and the built-in export and import."""

from __future__ import annotations

from typing import Any

from mapper.dispatch.messages import check_job_id
from mapper.engine.jobs import start_job
from mapper.engine.runtime import Runtime
from mapper.engine.spec import JobSpec
from mapper.engine.status import job_status
from mapper.errors import InvalidJobError, NotFoundError

#: ``"mapper"`` values that name a built-in job rather than ``module:Class``.
BUILT_IN = ("export", "import")

_IMPORT_OPTIONS = {
    "natural_key": "natural_keys",
    "rename_names": "rename_names",
    "dangling": "dangling",
    "on_conflict": "on_conflict",
    "default": "defaults",
    "rename": "renames",
    "drop": "drops",
}


def start_from_json(rt: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    """Start what ``data`` describes; the same ``id`` twice starts one job."""
    if data.get("mapper") == "export":
        return _start_export(rt, data)
    if data.get("mapper") == "import":
        return _start_import(rt, data)
    job = start_job(rt, JobSpec.from_dict(data))
    return {"id": job.id}


def _params(data: dict[str, Any], allowed: set[str]) -> dict[str, Any]:
    unknown = set(data) - {"mapper", "params", "id", "shards", "batch_size", "namespace"}
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise InvalidJobError(f"'params' must be an object, got {params!r}")
    unknown |= set(params) - allowed
    if unknown:
        raise InvalidJobError(f"unknown field(s) for {data['mapper']}: {sorted(unknown)}")
    return params


def _start_export(rt: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    from mapper.transfer.export import ExportSpec, start_export

    params = _params(data, {"out", "kinds", "namespaces", "all_namespaces", "filters"})
    namespaces = params.get("namespaces")
    if params.get("all_namespaces"):
        namespaces = ["*"]
    elif namespaces is None and "namespace" in data:
        namespaces = [data["namespace"]]
    spec = ExportSpec(
        out=params.get("out", ""),
        kinds=params.get("kinds", ()),
        namespaces=namespaces,
        filters=[tuple(f) for f in params.get("filters", ())],
        shards=data.get("shards", 4),
        batch_size=data.get("batch_size", 500),
        id=data.get("id"),
    )
    return {"id": start_export(rt, spec).id, "kind": "export"}


def _start_import(rt: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    from mapper.transfer.importer import ImportSpec, start_import
    from mapper.transfer.options import RemapOptions, parse_options

    allowed = {"source", "mode", "move_project", "dry_run", *_IMPORT_OPTIONS}
    params = _params(data, allowed)
    mode = params.get("mode", "keep")
    options = parse_options(
        **{_IMPORT_OPTIONS[k]: v for k, v in params.items() if k in _IMPORT_OPTIONS}
    )
    spec = ImportSpec(
        source=params.get("source", ""),
        mode=mode,
        namespace=data.get("namespace"),
        move_project=bool(params.get("move_project")),
        dry_run=bool(params.get("dry_run")),
        shards=data.get("shards", 4),
        batch_size=data.get("batch_size", 2),
        id=data.get("id"),
        options=options if mode == "remap" else RemapOptions(),
    ).validate()
    plan, run = start_import(rt, spec)
    return {"id": run.id if run else None, "kind": "import", "plan": plan}


def any_status(rt: Runtime, job_id: str) -> dict[str, Any]:
    """A job's status; an export's or an import's combined status for their ids."""
    check_job_id(job_id)
    try:
        return job_status(rt, job_id)
    except NotFoundError:
        pass
    from mapper.transfer.export import export_status
    from mapper.transfer.importer import import_status

    try:
        return {"kind": "export", **export_status(rt, job_id)}
    except NotFoundError:
        pass
    try:
        return {"kind": "import", **import_status(rt, job_id)}
    except NotFoundError:
        raise NotFoundError(f"no job, export or import {job_id!r}") from None
