"""How much of a job is left: COUNT queries over each unfinished shard's rest of range."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mapper.datastore import txn as txns
from mapper.datastore.keys import key_from_bytes
from mapper.datastore.query import range_filters
from mapper.engine.adapter import Adapter
from mapper.engine.loading import load_mapper_class
from mapper.engine.records import job_key, shard_key
from mapper.engine.units import Unit
from mapper.errors import NotFoundError

if TYPE_CHECKING:
    from mapper.engine.runtime import Runtime


def remaining_entities(rt: Runtime, job_id: str) -> dict[int, int]:
    """For each unfinished shard of the job, how many entities its query has still to
    read (after its checkpoint): one COUNT aggregation query per shard.

    Raises whatever the store answers when it has no count query; callers say so.
    """
    ns = rt.settings.state_namespace
    with rt.context():
        job = txns.get(rt.store, job_key(job_id, ns))[0]
        if job is None:
            raise NotFoundError(f"no job {job_id!r}")
        shards = txns.get(rt.store, *[shard_key(job_id, i, ns) for i in range(len(job.ranges))])
    adapter = Adapter(load_mapper_class(job.mapper)(**(job.params or {})))
    kind, filters = adapter.kind_name(), adapter.filter_pbs()
    counts = {}
    for shard in shards:
        if shard is None or shard.shard_status.is_final:
            continue
        if job.many_namespaces:
            counts[shard.index] = _units_left(rt, job, shard, kind, filters)
            continue
        after, start = key_from_bytes(shard.checkpoint), key_from_bytes(shard.start_key)
        parts = range_filters(filters, start, key_from_bytes(shard.end_key), after)
        counts[shard.index] = rt.store.count(kind, parts, job.namespace or "")
    return counts


def _units_left(rt: Runtime, job: Any, shard: Any, kind: str, filters: list[Any]) -> int:
    """A shard of work units: the rest of the unit it reads (one COUNT) and the planned
    sizes of the units after it."""
    units = [Unit.from_json(u) for u in (job.units or [])[shard.index]]
    current = shard.unit or 0
    if current >= len(units):
        return 0
    unit = units[current]
    start, end = key_from_bytes(unit.start), key_from_bytes(unit.end)
    parts = range_filters(filters, start, end, key_from_bytes(shard.checkpoint))
    rest = rt.store.count(kind, parts, unit.namespace)
    return rest + sum(u.size for u in units[current + 1 :])
