"""Jobs: start, control (abort/pause/resume) and the Job handle."""

from __future__ import annotations

import datetime
import functools
import logging
import uuid
from typing import TYPE_CHECKING, Any

from mapper.datastore import txn as txns
from mapper.dispatch.messages import SliceTask, check_job_id
from mapper.engine import units
from mapper.engine.adapter import Adapter
from mapper.engine.loading import load_mapper_class
from mapper.engine.records import (
    BASE_FORMAT,
    UNITS_FORMAT,
    JobStatus,
    ShardStatus,
    _MapperJob,
    _MapperShard,
    job_key,
    shard_key,
    utcnow,
)
from mapper.engine.slices import maybe_finalize
from mapper.engine.spec import MAX_BATCH_SIZE, JobSpec, check_max_rate
from mapper.engine.splitting import split_ranges
from mapper.engine.status import JobInfo, StatusHandle, job_status
from mapper.errors import InvalidJobError, JobStateError, NotFoundError

if TYPE_CHECKING:
    from mapper.engine.runtime import Runtime

logger = logging.getLogger(__name__)


def new_job_id() -> str:
    return f"{datetime.datetime.now(datetime.UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}"


def start_job(rt: Runtime, spec: JobSpec) -> Job:
    """Create the job and its shards and enqueue their first slices.

    Idempotent for a client-chosen ``spec.id``: a second start of the same id
    finishes an interrupted start and never rewrites what another start wrote.
    A start of a job already running re-drives it (each unfinished shard from
    its current slice, or finalize if all are done): re-running the command
    that started a job whose process died picks the job up where it stopped.
    """
    spec.validate()
    adapter = Adapter(load_mapper_class(spec.mapper)(**spec.params))
    adapter.filter_pbs()  # bad params or FILTERS fail before any write
    adapter.kind_name()
    if (adapter.writes or spec.exactly_once) and spec.batch_size > MAX_BATCH_SIZE:
        raise InvalidJobError(
            f"batch_size must be 1..{MAX_BATCH_SIZE} for a mapper that writes or an "
            f"exactly-once job (a commit holds 500 mutations), got {spec.batch_size}"
        )
    if spec.all_namespaces or spec.namespace_prefix is not None:
        # A store that lists no namespaces says so now, not from a half-started job.
        units.select_namespaces(rt.store, spec.all_namespaces, spec.namespace_prefix, None)
    job_id = spec.id or new_job_id()
    ramp_up = spec.ramp_up
    if ramp_up is None:
        ramp_up = rt.settings.ramp_up_default and adapter.writes
    with rt.context():
        job = _create_job_record(rt, job_id, spec, ramp_up)
        if job.job_status == JobStatus.STARTING:
            rt.fault("start:before_shards", job_id=job_id)
            job, started = _create_shards(rt, job, adapter)
            if started:
                for index in range(len(job.ranges)):
                    rt.dispatcher.enqueue(SliceTask(job_id, index, 0, 0))
                logger.info(
                    "job=%s started mapper=%s shards=%d", job_id, spec.mapper, len(job.ranges)
                )
                return Job(rt, job_id)
        if txns.run_in_transaction(rt.store, functools.partial(_next_generation, key=job.key)):
            _drive(rt, job_id)
            logger.info("job=%s was started before: re-driven", job_id)
    return Job(rt, job_id)


def _next_generation(t: txns.Txn, key: Any) -> bool:
    """A job still in progress gets a new generation (fresh task names); False otherwise.

    finish() gets its attempts anew: a copy that died in it counts as an attempt (a
    task that keeps dying there must end), but the command re-run after its process
    was killed there is not one more death.
    """
    job = t.get(key)[0]
    if job.job_status not in (JobStatus.RUNNING, JobStatus.FINALIZING):
        return False
    job.generation = (job.generation or 0) + 1
    job.finalize_attempts = 0
    t.put(job)
    return True


def _create_job_record(rt: Runtime, job_id: str, spec: JobSpec, ramp_up: bool) -> _MapperJob:
    key = job_key(job_id, rt.settings.state_namespace)

    def fn(t: txns.Txn) -> _MapperJob:
        existing = t.get(key)[0]
        if existing is not None:
            return existing
        now = utcnow()
        job = _MapperJob(
            key=key,
            status=JobStatus.STARTING.value,
            mapper=spec.mapper,
            params=spec.params,
            namespace=spec.namespace,
            batch_size=spec.batch_size,
            exactly_once=spec.exactly_once,
            dry_run=spec.dry_run,
            sample=spec.sample,
            before_write=spec.before_write,
            shards_requested=spec.shards,
            created=now,
            updated=now,
        )
        job.set_budget(spec.max_rate, ramp_up)
        if spec.many_namespaces:
            job.all_namespaces = spec.all_namespaces
            job.namespace_prefix = spec.namespace_prefix
            job.namespaces = spec.namespaces
            job.namespace_counters = spec.namespace_counters
            job.record_format = max(job.record_format or BASE_FORMAT, UNITS_FORMAT)
        t.put(job)
        return job

    return txns.run_in_transaction(rt.store, fn)


def _create_shards(rt: Runtime, job: _MapperJob, adapter: Adapter) -> tuple[_MapperJob, bool]:
    """Ranges (set once), shard records (each written only if absent), then RUNNING.

    Returns the job as it stands and whether this call made it RUNNING: a start
    that read a stale copy writes nothing over another start's work.
    """
    if not job.ranges and job.many_namespaces:
        job = _plan_units(rt, job, adapter)
    elif not job.ranges:
        given = adapter.mapper.split_keys(job.shards_requested)
        kind, shards = adapter.kind_name(), job.shards_requested
        ranges, how = split_ranges(rt.store, kind, job.namespace, shards, given)
        hexed = [[r[0].hex() if r[0] else None, r[1].hex() if r[1] else None] for r in ranges]
        job = txns.run_in_transaction(rt.store, lambda t: _set_ranges(t, job.key, hexed, how))
    _insert_shards(rt, job)

    def mark_running(t: txns.Txn) -> tuple[_MapperJob, bool]:
        current = t.get(job.key)[0]
        if current.job_status != JobStatus.STARTING:
            return current, False
        current.move_to(JobStatus.RUNNING)
        t.put(current)
        return current, True

    return txns.run_in_transaction(rt.store, mark_running)


def _set_ranges(
    t: txns.Txn,
    key: Any,
    ranges: list[list[str | None]],
    how: str,
    namespaces: list[str] | None = None,
    plan: list[list[Any]] | None = None,
) -> _MapperJob:
    current = t.get(key)[0]
    if not current.ranges:  # else another start split first: its ranges (and plan) stand
        current.ranges, current.split = ranges, how
        if plan is not None:
            current.namespaces, current.units = namespaces, plan
        t.put(current)
    return current


def _plan_units(rt: Runtime, job: _MapperJob, adapter: Adapter) -> _MapperJob:
    """A job over many namespaces: take the namespace list once, size each namespace,
    deal work units to the shards (mapper.engine.units), and record it all on the job."""
    kind = adapter.kind_name()
    names, selection = units.select_namespaces(
        rt.store, bool(job.all_namespaces), job.namespace_prefix, job.namespaces
    )
    sizes, samples = units.measure(rt.store, kind, names, job.shards_requested)
    dealt = units.plan(sizes, samples, job.shards_requested)
    how = units.describe(dealt, selection)
    plan = [[unit.to_json() for unit in each] for each in dealt]
    ranges: list[list[str | None]] = [[None, None] for _ in dealt]
    logger.info("job=%s planned: %s", job.job_id, how)

    def fn(t: txns.Txn) -> _MapperJob:
        return _set_ranges(t, job.key, ranges, how, names, plan)

    return txns.run_in_transaction(rt.store, fn)


#: Shard records created per transaction: each is an entity group of its own, and
#: the Datastore emulator allows 25 a transaction.
SHARDS_PER_TXN = 20


def _insert_shards(rt: Runtime, job: _MapperJob) -> None:
    """Write each shard record that does not exist yet; never one that does."""
    ns = rt.settings.state_namespace
    records = [
        _MapperShard(
            key=shard_key(job.job_id, i, ns),
            job_id=job.job_id,
            index=i,
            start_key=bytes.fromhex(start) if start else None,
            end_key=bytes.fromhex(end) if end else None,
            updated=utcnow(),
        )
        for i, (start, end) in enumerate(job.ranges)
    ]

    def insert(t: txns.Txn, group: list[_MapperShard]) -> None:
        existing = t.get(*[r.key for r in group])
        t.put(*[r for r, e in zip(group, existing, strict=True) if e is None])

    for start in range(0, len(records), SHARDS_PER_TXN):
        group = records[start : start + SHARDS_PER_TXN]
        txns.run_in_transaction(rt.store, functools.partial(insert, group=group))


# -- control ---------------------------------------------------------------------


def abort_job(rt: Runtime, job_id: str) -> JobInfo:
    return _set_status(
        rt, job_id, JobStatus.ABORTED, {JobStatus.STARTING, JobStatus.RUNNING, JobStatus.PAUSED}
    )


def pause_job(rt: Runtime, job_id: str) -> JobInfo:
    return _set_status(rt, job_id, JobStatus.PAUSED, {JobStatus.RUNNING})


def resume_job(rt: Runtime, job_id: str) -> JobInfo:
    """Let a paused job go on: every unfinished shard gets a task of a new generation."""
    check_job_id(job_id)
    with rt.context():
        # From RUNNING too: re-drives a job whose in-process worker died.
        _set_status(
            rt,
            job_id,
            JobStatus.RUNNING,
            {JobStatus.PAUSED, JobStatus.RUNNING},
            bump_generation=True,
        )
        _drive(rt, job_id)
        return job_status(rt, job_id)


def retry_job(rt: Runtime, job_id: str) -> JobInfo:
    """Run a FAILED job again: its failed shards go on from their checkpoints.

    Batches already checkpointed are not mapped again; done shards stay done; a
    job that failed in finish() finalizes again. With the local dispatcher the
    caller waits for it (``Job(rt, job_id).wait()``).
    """
    check_job_id(job_id)
    ns = rt.settings.state_namespace

    def reopen_job(t: txns.Txn) -> _MapperJob:
        job = t.get(job_key(job_id, ns))[0]
        if job is None:
            raise NotFoundError(f"no job {job_id!r}")
        if job.job_status != JobStatus.FAILED:
            raise JobStateError(f"job {job_id!r} is {job.status}; only a failed job is retried")
        job.reopen()
        t.put(job)
        return job

    def reopen_shard(t: txns.Txn, skey: Any) -> None:
        shard = t.get(skey)[0]
        if shard is not None and shard.shard_status == ShardStatus.FAILED:
            shard.reopen()
            t.put(shard)

    with rt.context():
        job = txns.run_in_transaction(rt.store, reopen_job)
        for index in range(len(job.ranges)):
            skey = shard_key(job_id, index, ns)
            txns.run_in_transaction(rt.store, functools.partial(reopen_shard, skey=skey))
        _drive(rt, job_id)
        return job_status(rt, job_id)


def throttle_job(
    rt: Runtime, job_id: str, max_rate: float | None, ramp_up: bool | None = None
) -> JobInfo:
    """Change a job's rate budget; its running slices take it at their next batch.

    ``max_rate`` None lifts the limit; ``ramp_up`` None keeps the job's setting.
    """
    check_job_id(job_id)
    check_max_rate(max_rate)
    if ramp_up is not None and not isinstance(ramp_up, bool):
        raise InvalidJobError(f"ramp_up must be a boolean, got {ramp_up!r}")

    def fn(t: txns.Txn) -> None:
        job = t.get(job_key(job_id, rt.settings.state_namespace))[0]
        if job is None:
            raise NotFoundError(f"no job {job_id!r}")
        if job.job_status.is_final:
            raise JobStateError(f"job {job_id!r} is {job.status}; its rate can no longer change")
        job.set_budget(max_rate, job.ramp_up if ramp_up is None else ramp_up)
        t.put(job)

    with rt.context():
        txns.run_in_transaction(rt.store, fn)
        logger.info("job=%s throttled: max_rate=%s ramp_up=%s", job_id, max_rate, ramp_up)
        return job_status(rt, job_id)


def _drive(rt: Runtime, job_id: str) -> None:
    """Enqueue each unfinished shard's current slice under the job's generation; finalize
    if every shard is done (a pause that landed just before finalize, a dead finish())."""
    ns = rt.settings.state_namespace
    job = txns.get(rt.store, job_key(job_id, ns))[0]
    for index in range(len(job.ranges)):
        skey = shard_key(job_id, index, ns)

        def fn(t: txns.Txn, skey: Any = skey) -> SliceTask | None:
            shard = t.get(skey)[0]
            if shard is None or shard.shard_status.is_final:
                return None
            shard.status = ShardStatus.RUNNING.value
            shard.generation = job.generation
            t.put(shard)
            return SliceTask(job_id, shard.index, shard.slice, job.generation)

        successor = txns.run_in_transaction(rt.store, fn)
        if successor is not None:
            rt.dispatcher.enqueue(successor)
    maybe_finalize(rt, job_id)


def _set_status(
    rt: Runtime,
    job_id: str,
    status: JobStatus,
    allowed_from: set[JobStatus],
    bump_generation: bool = False,
) -> JobInfo:
    check_job_id(job_id)

    def fn(t: txns.Txn) -> None:
        job = t.get(job_key(job_id, rt.settings.state_namespace))[0]
        if job is None:
            raise NotFoundError(f"no job {job_id!r}")
        if job.job_status not in allowed_from:
            raise JobStateError(f"job {job_id!r} is {job.status}; cannot make it {status.value}")
        job.move_to(status)
        if bump_generation:
            job.generation = (job.generation or 0) + 1
        t.put(job)

    with rt.context():
        txns.run_in_transaction(rt.store, fn)
        return job_status(rt, job_id)


class Job(StatusHandle):
    """A handle on a job: status, wait, abort, pause, resume."""

    def status(self) -> JobInfo:
        return job_status(self.rt, self.id)

    def abort(self) -> JobInfo:
        return abort_job(self.rt, self.id)

    def pause(self) -> JobInfo:
        return pause_job(self.rt, self.id)

    def resume(self) -> JobInfo:
        return resume_job(self.rt, self.id)

    def throttle(self, max_rate: float | None, ramp_up: bool | None = None) -> JobInfo:
        return throttle_job(self.rt, self.id, max_rate, ramp_up)
