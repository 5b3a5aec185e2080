"""Starting and reading jobs from JSON: user mappers and the built-in export and import."""

from __future__ import annotations

from typing import Any

from mapper.dispatch.messages import check_job_id
from mapper.engine.jobs import start_job
from mapper.engine.runtime import Runtime
from mapper.engine.spec import JobSpec
from mapper.engine.status import job_status
from mapper.errors import InvalidJobError, NotFoundError
from mapper.transfer.export import export_status, start_export
from mapper.transfer.importer import import_status, start_import
from mapper.transfer.requests import export_spec, import_spec

#: Top-level fields of a start request besides ``mapper`` and ``params``.
_TOP = ("id", "shards", "batch_size", "namespace", "max_rate")


def start_from_json(rt: Runtime, data: dict[str, Any]) -> dict[str, Any]:
    """Start what ``data`` describes; the same ``id`` twice starts one job."""
    if data.get("mapper") == "export":
        return {"id": start_export(rt, export_spec(_fields(data))).id, "kind": "export"}
    if data.get("mapper") == "import":
        plan, run = start_import(rt, import_spec(_fields(data)))
        return {"id": run.id if run else None, "kind": "import", "plan": plan}
    job = start_job(rt, JobSpec.from_dict(data))
    return {"id": job.id}


def _fields(data: dict[str, Any]) -> dict[str, Any]:
    """A built-in job's request as flat fields: ``params`` plus the top-level options."""
    unknown = sorted(set(data) - {"mapper", "params", *_TOP})
    if unknown:
        raise InvalidJobError(f"unknown field(s) for {data['mapper']}: {unknown}")
    params = data.get("params") or {}
    if not isinstance(params, dict):
        raise InvalidJobError(f"'params' must be an object, got {params!r}")
    clash = sorted(set(params) & set(_TOP))
    if clash:
        raise InvalidJobError(f"{clash} go at the top level of the request, not in 'params'")
    return {**params, **{k: data[k] for k in _TOP if k in data}}


def any_status(rt: Runtime, job_id: str) -> dict[str, Any]:
    """A job's status; an export's or an import's combined status for their ids."""
    check_job_id(job_id)
    try:
        return job_status(rt, job_id).to_json()
    except NotFoundError:
        pass
    try:
        return {"kind": "export", **export_status(rt, job_id).to_json()}
    except NotFoundError:
        pass
    try:
        return {"kind": "import", **import_status(rt, job_id).to_json()}
    except NotFoundError:
        raise NotFoundError(f"no job, export or import {job_id!r}") from None
