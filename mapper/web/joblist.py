"""The console's job list: newest first, filtered by status and mapper, paged by time.

An export or an import is one entry (at the place of its first job), with its jobs
or stages; the jobs it is made of are not listed again.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from mapper.engine.records import _MapperJob
from mapper.engine.runtime import Runtime
from mapper.engine.status import job_status
from mapper.errors import InvalidJobError, NotFoundError
from mapper.web.jobs_api import any_status

#: Records read per query page while filling a page of entries.
SCAN_PAGE = 50
#: The most job records one list page reads (a filter matching little stops here).
SCAN_LIMIT = 1000
STATUSES = ("starting", "running", "paused", "finalizing", "succeeded", "failed", "aborted")


@dataclasses.dataclass(frozen=True)
class ListQuery:
    """What the operator asked the list for (from the query string)."""

    status: str = ""
    mapper: str = ""
    before: str = ""
    limit: int = 20

    @classmethod
    def from_args(cls, args: Any) -> ListQuery:
        status = args.get("status", "").strip()
        if status and status not in STATUSES:
            raise InvalidJobError(f"status must be one of {STATUSES}, got {status!r}")
        before = args.get("before", "").strip()
        if before:
            _parse_time(before)
        try:
            limit = int(args.get("limit", 20))
        except ValueError:
            raise InvalidJobError(f"limit must be a number, got {args.get('limit')!r}") from None
        return cls(status, args.get("mapper", "").strip(), before, max(1, min(limit, 200)))


def list_entries(rt: Runtime, query: ListQuery) -> dict[str, Any]:
    """``{"entries": [...], "next": before-value or None}``: one page of the list."""
    entries: list[dict[str, Any]] = []
    last_created: datetime.datetime | None = None
    for scanned, record in enumerate(_records(rt, query.before), start=1):
        entry = _entry(rt, record)
        if entry is not None and _wanted(entry, query):
            if len(entries) == query.limit:
                return {"entries": entries, "next": _cursor(last_created)}
            entries.append(entry)
        last_created = record.created
        if scanned >= SCAN_LIMIT:
            return {"entries": entries, "next": _cursor(last_created)}
    return {"entries": entries, "next": None}


def _records(rt: Runtime, before: str) -> Any:
    """Job records, newest first, created before ``before`` (ISO time) if given."""
    with rt.context():
        query = _MapperJob.query(namespace=rt.settings.state_namespace)
        if before:
            query = query.filter(_MapperJob.created < _parse_time(before))
        query = query.order(-_MapperJob.created)
        cursor = None
        while True:
            page, cursor, more = query.fetch_page(SCAN_PAGE, start_cursor=cursor)
            yield from page
            if not more or not page:
                return


def _entry(rt: Runtime, record: _MapperJob) -> dict[str, Any] | None:
    """A record's list entry; None for a job of an export or import not listed alone."""
    group = _group_of(record)
    if group is None:
        return {"kind": "job", **job_status(rt, record.job_id).to_json()}
    group_id, kind = group
    if record.job_id != f"{group_id}-0":
        return None
    try:
        data = any_status(rt, group_id)
    except NotFoundError:
        return {"kind": "job", **job_status(rt, record.job_id).to_json()}
    return {**data, "mapper": kind, "created": _iso(record.created)}


def _group_of(record: _MapperJob) -> tuple[str, str] | None:
    """(export or import id, "export" or "import") for a job that is part of one."""
    params = record.params or {}
    if not (record.mapper or "").startswith("mapper.transfer."):
        return None
    if "import" in params and "stage" in params:
        return str(params["import"]), "import"
    if "export" in params:
        return str(params["export"]), "export"
    return None


def _wanted(entry: dict[str, Any], query: ListQuery) -> bool:
    if query.status and entry["status"] != query.status:
        return False
    return query.mapper.lower() in str(entry.get("mapper", "")).lower()


def _parse_time(value: str) -> datetime.datetime:
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise InvalidJobError(f"'before' must be an ISO time, got {value!r}") from None
    return parsed.astimezone(datetime.UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


def _cursor(value: datetime.datetime | None) -> str | None:
    """The ``before`` of the next page: a UTC time with no ``+`` to escape in a URL."""
    return None if value is None else value.isoformat() + "Z"


def _iso(value: datetime.datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=datetime.UTC).isoformat()
