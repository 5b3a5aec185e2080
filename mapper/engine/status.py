"""Reading jobs: typed status (JobInfo, ShardInfo), listing, roll-ups and waiting until final."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from mapper.datastore import txn as txns
from mapper.datastore.keys import key_from_bytes, key_repr
from mapper.datastore.rpc import TRANSIENT
from mapper.dispatch.messages import check_job_id
from mapper.engine.records import (
    OTHER,
    JobStatus,
    ShardStatus,
    _MapperJob,
    _MapperShard,
    job_key,
    shard_key,
    sum_totals,
)
from mapper.engine.samples import epoch
from mapper.engine.throttle import RampUp, allowed_rate
from mapper.engine.units import Unit, namespaces_done
from mapper.errors import NotFoundError

if TYPE_CHECKING:
    from mapper.dispatch.base import Dispatcher
    from mapper.engine.runtime import Runtime

logger = logging.getLogger(__name__)

# -- the types ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ShardInfo:
    """One shard as it stands: range progress, counters, its last error."""

    index: int
    status: ShardStatus
    slice: int
    checkpoint: str | None
    counters: dict[str, int]
    batches: int
    attempts: int
    last_error: str | None
    failed_key: str | None
    updated: str | None
    #: The shard's key range (``start <= key < end``; None: open), printed as keys are.
    start: str | None = None
    end: str | None = None
    #: ``[[epoch seconds, processed], ...]`` taken at checkpoints (mapper.engine.samples).
    samples: tuple[tuple[float, int], ...] = ()
    #: Throttling, as its last slice saw it: ops/s measured and allowed (None: no
    #: limit), and the seconds it spent waiting for budget or backing off.
    rate: float | None = None
    allowed_rate: float | None = None
    throttled_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return json_ready(self)


@dataclasses.dataclass(frozen=True)
class JobInfo:
    """A job as it stands: status, counters summed over shards, the shards, the error."""

    id: str
    mapper: str
    status: JobStatus
    params: dict[str, Any]
    namespace: str
    batch_size: int
    exactly_once: bool
    split: str
    counters: dict[str, int]
    shards: tuple[ShardInfo, ...]
    shards_done: int
    error: str | None
    failed_key: str | None
    failed_shard: int | None
    created: str | None
    updated: str | None
    finished: str | None
    #: An audit run: nothing was written; ``diffs`` are its first before/after diffs.
    dry_run: bool = False
    sample: int | None = None
    diffs: tuple[dict[str, Any], ...] = ()
    #: The rate budget (docs/throttling.md): the job's ``max_rate`` (None: no limit),
    #: ramp-up on or off, the rate allowed now (the lower of the two; None: no limit),
    #: the rate its running shards measured, and the seconds its shards spent throttled.
    max_rate: float | None = None
    ramp_up: bool = False
    allowed_rate: float | None = None
    rate: float = 0.0
    throttled_seconds: float = 0.0
    #: A job over many namespaces (docs/namespaces.md): how many namespaces it listed at
    #: start, how many of those holding the kind are read through and how many hold it,
    #: the entities its plan counted, the counters per namespace when asked for (top
    #: ones and "(other)"), and the namespaces that appeared after it started (not read).
    namespaces_listed: int | None = None
    namespaces_done: int | None = None
    namespaces_total: int | None = None
    planned: int | None = None
    namespace_counters: dict[str, dict[str, int]] | None = None
    namespaces_added: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready data, as the HTTP API and ``--json`` print it."""
        return json_ready(self)


def json_ready(info: Any) -> dict[str, Any]:
    """A status dataclass as JSON-ready data: statuses as their values, tuples as lists,
    nested statuses (shards) as their own JSON."""
    return {f.name: _json_value(getattr(info, f.name)) for f in dataclasses.fields(info)}


def _json_value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_json_value(item) for item in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return json_ready(value)
    return value


#: The audit diffs a JobInfo shows, over all shards.
MAX_JOB_DIFFS = 10

# -- reading -----------------------------------------------------------------------


def job_status(rt: Runtime, job_id: str) -> JobInfo:
    """The job as it stands: status, counters, shards, errors."""
    ns = rt.settings.state_namespace
    check_job_id(job_id)
    with rt.context():
        job = txns.get(rt.store, job_key(job_id, ns))[0]
        if job is None:
            raise NotFoundError(f"no job {job_id!r}")
        shards = txns.get(rt.store, *[shard_key(job_id, i, ns) for i in range(len(job.ranges))])
    ramp = RampUp(
        rt.settings.ramp_start_rate, rt.settings.ramp_growth, rt.settings.ramp_step_seconds
    )
    return _describe(job, shards, ramp)


def latest_job_id(rt: Runtime) -> str | None:
    return next(iter(list_job_ids(rt, limit=1)), None)


def list_job_ids(rt: Runtime, limit: int = 50) -> list[str]:
    with rt.context():
        keys = (
            _MapperJob.query(namespace=rt.settings.state_namespace)
            .order(-_MapperJob.created)
            .fetch(limit, keys_only=True)
        )
    return [str(k.id()) for k in keys]


def list_jobs(rt: Runtime, limit: int = 50) -> list[JobInfo]:
    return [job_status(rt, job_id) for job_id in list_job_ids(rt, limit)]


def _describe(job: _MapperJob, shards: list[_MapperShard | None], ramp: RampUp) -> JobInfo:
    present = [s for s in shards if s is not None]
    running = [s for s in present if s.shard_status == ShardStatus.RUNNING]
    allowed = None
    if job.job_status == JobStatus.RUNNING:
        started = epoch(job.ramp_started) if job.ramp_started else time.time()
        allowed = allowed_rate(job.max_rate, ramp if job.ramp_up else None, time.time() - started)
    return JobInfo(
        id=job.job_id,
        mapper=job.mapper,
        status=job.job_status,
        params=job.params or {},
        namespace=job.namespace or "",
        batch_size=job.batch_size,
        exactly_once=bool(job.exactly_once),
        split=job.split or "",
        counters=sum_totals(present),
        shards=tuple(_describe_shard(s) for s in present),
        shards_done=sum(1 for s in present if s.shard_status == ShardStatus.DONE),
        error=job.error,
        failed_key=job.failed_key,
        failed_shard=job.failed_shard,
        created=_iso(job.created),
        updated=_iso(job.updated),
        finished=_iso(job.finished),
        dry_run=bool(job.dry_run),
        sample=job.sample,
        diffs=tuple(d for s in present for d in s.diffs or [])[:MAX_JOB_DIFFS],
        max_rate=job.max_rate,
        ramp_up=bool(job.ramp_up),
        allowed_rate=None if allowed is None else round(allowed, 2),
        rate=round(sum(s.rate or 0.0 for s in running), 2),
        throttled_seconds=round(sum(s.throttled_seconds or 0.0 for s in present), 3),
        **_namespaces(job, shards),
    )


#: The namespaces a status lists counters for, besides "(other)".
TOP_NAMESPACES = 20


def _namespaces(job: _MapperJob, shards: list[_MapperShard | None]) -> dict[str, Any]:
    """A job over many namespaces: its namespaces, how far, and the counters per namespace."""
    if not job.many_namespaces or job.units is None:
        return {}
    plan = [[Unit.from_json(u) for u in each] for each in job.units]
    progress = [
        (units, (s.unit or 0) if s else 0, s is not None and s.shard_status == ShardStatus.DONE)
        for units, s in zip(plan, shards, strict=False)
    ]
    done, total = namespaces_done(progress)
    info: dict[str, Any] = {
        "namespaces_listed": len(job.namespaces or ()),
        "namespaces_done": done,
        "namespaces_total": total,
        "planned": sum(u.size for units in plan for u in units),
        "namespaces_added": job.namespaces_added,
    }
    if job.namespace_counters:
        info["namespace_counters"] = _top_namespaces(shards)
    return info


def _top_namespaces(shards: list[_MapperShard | None]) -> dict[str, dict[str, int]]:
    merged: dict[str, dict[str, int]] = {}
    for shard in shards:
        for name, counts in ((shard.namespace_counts or {}) if shard else {}).items():
            mine = merged.setdefault(name, {})
            for counter, value in counts.items():
                mine[counter] = mine.get(counter, 0) + value
    ranked = sorted(
        (n for n in merged if n != OTHER), key=lambda n: (-merged[n].get("processed", 0), n)
    )
    top = {name: merged[name] for name in ranked[:TOP_NAMESPACES]}
    rest = [merged[n] for n in ranked[TOP_NAMESPACES:]]
    rest += [merged[OTHER]] if OTHER in merged else []
    if rest:
        top[OTHER] = sum_counters(rest)
    return top


def _describe_shard(shard: _MapperShard) -> ShardInfo:
    checkpoint = key_from_bytes(shard.checkpoint)
    return ShardInfo(
        index=shard.index,
        status=shard.shard_status,
        slice=shard.slice,
        checkpoint=key_repr(checkpoint) if checkpoint is not None else None,
        counters=shard.totals(),
        batches=shard.batches or 0,
        attempts=shard.attempts or 0,
        last_error=shard.last_error,
        failed_key=shard.failed_key,
        updated=_iso(shard.updated),
        start=_printed(shard.start_key),
        end=_printed(shard.end_key),
        samples=tuple((t, v) for t, v in shard.samples or []),
        rate=shard.rate,
        allowed_rate=shard.allowed_rate,
        throttled_seconds=shard.throttled_seconds or 0.0,
    )


def _printed(data: bytes | None) -> str | None:
    key = key_from_bytes(data)
    return key_repr(key) if key is not None else None


def _iso(value: datetime.datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=datetime.UTC).isoformat()


# -- work made of several jobs (exports, imports) -------------------------------------


def roll_up(statuses: Iterable[JobStatus | None], done: bool) -> JobStatus:
    """One status for work made of jobs: FAILED or ABORTED if any is; SUCCEEDED when ``done``.

    ``None`` stands for a job not started yet.
    """
    seen = set(statuses)
    if JobStatus.FAILED in seen:
        return JobStatus.FAILED
    if JobStatus.ABORTED in seen:
        return JobStatus.ABORTED
    return JobStatus.SUCCEEDED if done else JobStatus.RUNNING


def sum_counters(counters: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for each in counters:
        for name, value in each.items():
            total[name] = total.get(name, 0) + value
    return total


# -- waiting -----------------------------------------------------------------------


#: Seconds between the status reads of ``wait()``.
POLL = 0.25


class StatusHandle:
    """A handle on work whose ``status()`` says where it is; ``wait()`` polls until final."""

    what = "job"

    def __init__(self, rt: Runtime, handle_id: str):
        self.rt = rt
        self.id = handle_id

    def status(self) -> Any:
        raise NotImplementedError

    def wait(
        self,
        timeout: float | None = None,
        poll: float | None = None,
        progress: Callable[[Any], None] | None = None,
        max_poll: float | None = None,
    ) -> Any:
        """Block until the status is final; returns the last status.

        The status is read every ``poll`` seconds (0.25), and with the in-process
        dispatcher also as soon as one of its tasks ends (work ends at a task's end).
        ``max_poll``: the poll interval grows by a quarter each time up to this.
        """
        what = f"{self.what} {self.id}"
        tasks = self.rt.dispatcher
        # The tasks of a job may run in another process: the reads go on all the same.
        poll = POLL if poll is None else poll
        return wait_until_final(self.status, what, timeout, poll, progress, max_poll, tasks)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id}>"


def wait_until_final(
    fetch: Callable[[], Any],
    what: str,
    timeout: float | None = None,
    poll: float = 0.25,
    progress: Callable[[Any], None] | None = None,
    max_poll: float | None = None,
    tasks: Dispatcher | None = None,
) -> Any:
    """Poll ``fetch()`` until its ``status`` is final; returns the last status.

    ``tasks``: the dispatcher; an in-process one cuts a poll's sleep short when one of
    its tasks ends.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        if max_poll is not None:
            poll = min(max_poll, poll * 1.25)
        ended = tasks.tasks_ended() if tasks is not None else 0  # before the read
        try:
            info = fetch()
        except TRANSIENT as error:  # an outage of the status read is not the job's end
            if deadline is not None and time.monotonic() > deadline:
                raise
            logger.info("%s: status read failed (%s); trying again", what, error)
            time.sleep(poll)
            continue
        if progress is not None:
            progress(info)
        if info.status.is_final:
            return info
        now = time.monotonic()
        if deadline is not None and now > deadline:
            raise TimeoutError(f"{what} still {info.status.value} after {timeout}s")
        # Not past the deadline by more than a moment: the last read is at the deadline.
        pause = poll if deadline is None else min(poll, max(0.01, deadline - now))
        if tasks is not None:
            tasks.wait_task_end(ended, pause)
        else:
            time.sleep(pause)
