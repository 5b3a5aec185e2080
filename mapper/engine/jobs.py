"""Jobs: start, control (abort/pause/resume) and the Job handle."""

from __future__ import annotations

import datetime
import logging
import uuid
from typing import TYPE_CHECKING, Any

from mapper.datastore import txn as txns
from mapper.dispatch.messages import SliceTask, check_job_id
from mapper.engine.adapter import Adapter
from mapper.engine.loading import load_mapper_class
from mapper.engine.records import (
    JobStatus,
    ShardStatus,
    _MapperJob,
    _MapperShard,
    job_key,
    shard_key,
    utcnow,
)
from mapper.engine.slices import maybe_finalize
from mapper.engine.spec import JobSpec
from mapper.engine.splitting import split_ranges
from mapper.engine.status import JobInfo, StatusHandle, job_status
from mapper.errors import JobStateError, NotFoundError

if TYPE_CHECKING:
    from mapper.engine.runtime import Runtime

logger = logging.getLogger(__name__)


def new_job_id() -> str:
    return f"{datetime.datetime.now(datetime.UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}"


def start_job(rt: Runtime, spec: JobSpec) -> Job:
    """Create the job and its shards and enqueue their first slices.

    Idempotent for a client-chosen ``spec.id``: a second start of the same id
    finishes an interrupted start or changes nothing.
    """
    spec.validate()
    adapter = Adapter(load_mapper_class(spec.mapper)(**spec.params))
    adapter.filter_pbs()  # bad params or FILTERS fail before any write
    adapter.kind_name()
    job_id = spec.id or new_job_id()
    with rt.context():
        job = _create_job_record(rt, job_id, spec)
        if job.job_status == JobStatus.STARTING:
            _create_shards(rt, job, adapter)
        elif job.job_status != JobStatus.RUNNING:
            return Job(rt, job_id)
        for index in range(len(job.ranges)):
            rt.dispatcher.enqueue(SliceTask(job_id, index, 0, 0))
    logger.info("job=%s started mapper=%s shards=%d", job_id, spec.mapper, len(job.ranges))
    return Job(rt, job_id)


def _create_job_record(rt: Runtime, job_id: str, spec: JobSpec) -> _MapperJob:
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
            shards_requested=spec.shards,
            created=now,
            updated=now,
        )
        t.put(job)
        return job

    return txns.run_in_transaction(rt.store, fn)


def _create_shards(rt: Runtime, job: _MapperJob, adapter: Adapter) -> None:
    ns = rt.settings.state_namespace
    if not job.ranges:
        given = adapter.mapper.split_keys(job.shards_requested)
        kind, shards = adapter.kind_name(), job.shards_requested
        ranges, how = split_ranges(rt.store, kind, job.namespace, shards, given)
        job.ranges = [[r[0].hex() if r[0] else None, r[1].hex() if r[1] else None] for r in ranges]
        job.split = how
        txns.run_in_transaction(rt.store, lambda t: t.put(job))
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
    # No slice runs before the job is RUNNING, so rewriting fresh shards is safe.
    txns.put_records(rt.store, records)

    def mark_running(t: txns.Txn) -> None:
        current = t.get(job.key)[0]
        if current.job_status == JobStatus.STARTING:
            current.move_to(JobStatus.RUNNING)
            t.put(current)

    txns.run_in_transaction(rt.store, mark_running)
    job.status = JobStatus.RUNNING.value


# -- control ---------------------------------------------------------------------


def abort_job(rt: Runtime, job_id: str) -> JobInfo:
    return _set_status(
        rt, job_id, JobStatus.ABORTED, {JobStatus.STARTING, JobStatus.RUNNING, JobStatus.PAUSED}
    )


def pause_job(rt: Runtime, job_id: str) -> JobInfo:
    return _set_status(rt, job_id, JobStatus.PAUSED, {JobStatus.RUNNING})


def resume_job(rt: Runtime, job_id: str) -> JobInfo:
    """Let a paused job go on: every unfinished shard gets a task of a new generation."""
    ns = rt.settings.state_namespace
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
        # Every shard may be done already (a pause that landed just before finalize).
        maybe_finalize(rt, job_id)
        return job_status(rt, job_id)


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
