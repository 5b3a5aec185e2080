"""Finalize: a job's finish() once its shards are done, leased, fenced and bounded."""

from __future__ import annotations

import logging
import threading
import uuid
from typing import TYPE_CHECKING, Any

from google.cloud import ndb

from mapper.datastore import txn as txns
from mapper.datastore.metadata import list_namespaces
from mapper.datastore.rpc import is_permanent
from mapper.dispatch.messages import FinalizeTask
from mapper.engine.adapter import Adapter
from mapper.engine.loading import load_mapper_class
from mapper.engine.records import (
    JobStatus,
    ShardStatus,
    _MapperJob,
    check_format,
    job_key,
    shard_key,
    sum_totals,
)
from mapper.engine.units import holding_kind
from mapper.errors import RetrySlice

if TYPE_CHECKING:
    from mapper.engine.runtime import Runtime

logger = logging.getLogger(__name__)


def finalize(rt: Runtime, task: FinalizeTask) -> None:
    """Move a job whose shards are all done to SUCCEEDED, running finish() once.

    One copy of the task at a time holds the finalize lease, renewed while
    finish() runs, so a live copy is never taken over; its token fences what it
    records. A finish() that fails is tried ``max_attempts`` times (a copy that
    died counts), then the job is FAILED with the error.
    """
    jkey = job_key(task.job_id, rt.settings.state_namespace)
    rt.fault("before_finalize", job_id=task.job_id)
    totals = _totals_if_done(rt, task.job_id)
    if totals is None:
        return
    token = uuid.uuid4().hex
    job = txns.run_in_transaction(rt.store, lambda t: _claim(rt, t, jkey, token, totals))
    if job is None:
        return
    mapper = load_mapper_class(job.mapper)(**(job.params or {}))
    mapper.bind(task.job_id, None, rt)
    try:
        with _Renewal(rt, jkey, token):
            added = _namespaces_added(rt, job, mapper)  # never raises
            rt.fault("before_finish", job_id=task.job_id, token=token)
            if not job.dry_run:  # finish() acts on a job's results: an audit has none
                mapper.finish()
    except Exception as error:
        _record_failure(rt, jkey, token, error)
        return
    if txns.run_in_transaction(rt.store, lambda t: _succeed(t, jkey, token, added)):
        logger.info("job=%s succeeded totals=%s", task.job_id, totals)
    else:
        logger.warning("job=%s finish() done, but another copy holds the job now", task.job_id)


def _totals_if_done(rt: Runtime, job_id: str) -> dict[str, int] | None:
    """The job's totals when every shard is DONE; None when there is nothing to finalize.

    DONE is final for a shard, so what is read here stays true: the claim needs
    the job record alone (one entity group, whatever the shard count).
    """
    ns = rt.settings.state_namespace
    job = txns.get(rt.store, job_key(job_id, ns))[0]
    if job is None or job.job_status.is_final:
        return None
    check_format(job)
    shards = txns.get(rt.store, *[shard_key(job_id, i, ns) for i in range(len(job.ranges))])
    if not all(s is not None and s.shard_status == ShardStatus.DONE for s in shards):
        return None
    return sum_totals(shards)


def _claim(
    rt: Runtime, t: txns.Txn, jkey: ndb.Key, token: str, totals: dict[str, int]
) -> _MapperJob | None:
    job = t.get(jkey)[0]
    if job is None or job.job_status.is_final:
        return None
    if job.finalize_held():
        raise RetrySlice("finish() is running in another copy of this task", delay=2.0)
    if job.job_status not in (JobStatus.RUNNING, JobStatus.FINALIZING):
        return None
    attempts = job.finalize_attempts or 0
    if job.job_status == JobStatus.FINALIZING and attempts >= rt.settings.max_attempts:
        # The copies before this one died or lost their lease without an outcome.
        last = f"; last error: {job.error}" if job.error else " (each copy died)"
        job.fail(f"finish() did not complete in {attempts} attempts{last}", None, None)
        t.put(job)
        return None
    job.claim_finalize(token, rt.settings.lease_seconds, totals)
    t.put(job)
    return job


#: The names of namespaces that appeared after a job started that its record keeps.
ADDED_SHOWN = 10


def _namespaces_added(rt: Runtime, job: _MapperJob, mapper: Any) -> dict[str, Any] | None:
    """For a job over many namespaces: the namespaces that hold its kind now but were not
    read (they appeared, or got the kind, after the start). Reported, not read.

    A failure to find out is logged and recorded as None: it does not fail the job.
    """
    if not job.many_namespaces:
        return None
    try:
        planned = {unit[0] for each in job.units or [] for unit in each}
        candidates = set(job.namespaces or ())
        if job.all_namespaces or job.namespace_prefix is not None:
            prefix = job.namespace_prefix or ""
            candidates |= {n for n in list_namespaces(rt.store) if n.startswith(prefix)}
        kind = Adapter(mapper).kind_name()
        added = holding_kind(rt.store, kind, sorted(candidates - planned))
    except Exception:
        logger.warning("job=%s: could not look for namespaces it did not read", job.job_id,
                       exc_info=True)  # fmt: skip
        return None
    if added:
        logger.warning(
            "job=%s: %d namespaces hold the kind but were not read (new since the start): %s",
            job.job_id,
            len(added),
            ", ".join(added[:ADDED_SHOWN]),
        )
    return {"count": len(added), "first": added[:ADDED_SHOWN]}


def _succeed(t: txns.Txn, jkey: ndb.Key, token: str, added: dict[str, Any] | None = None) -> bool:
    job = t.get(jkey)[0]
    if job is None or not job.holds_finalize(token):
        return False
    job.namespaces_added = added
    job.move_to(JobStatus.SUCCEEDED)
    t.put(job)
    return True


def _record_failure(rt: Runtime, jkey: ndb.Key, token: str, error: Exception) -> None:
    """Count a failed finish(); FAILED when it cannot succeed, else retry the task."""
    message = f"finish() failed: {type(error).__name__}: {error}"

    def fn(t: txns.Txn) -> tuple[bool, int] | None:
        job = t.get(jkey)[0]
        if job is None or not job.holds_finalize(token):
            return None  # another copy holds the job: its outcome counts, not this one's
        gave_up = job.finalize_failed(message, is_permanent(error), rt.settings.max_attempts)
        t.put(job)
        return gave_up, job.finalize_attempts or 0

    outcome = txns.run_in_transaction(rt.store, fn)
    job_id = jkey.id()
    if outcome is None:
        logger.warning("job=%s %s (not recorded: another copy holds the job)", job_id, message)
        return
    gave_up, attempts = outcome
    if gave_up:
        logger.error("job=%s failed after %d attempts: %s", job_id, attempts, message)
        return
    logger.warning("job=%s attempt %d: %s", job_id, attempts, message)
    raise RetrySlice(message, delay=min(10.0, 0.2 * 2**attempts))


class _Renewal:
    """Renews the finalize lease while finish() runs, until the copy stops holding it."""

    def __init__(self, rt: Runtime, jkey: ndb.Key, token: str):
        self.rt, self.jkey, self.token = rt, jkey, token
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mapper-finalize", daemon=True)

    def __enter__(self) -> _Renewal:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        seconds = self.rt.settings.lease_seconds
        with self.rt.context():
            while not self._stop.wait(seconds / 3):
                try:
                    self.rt.fault("finalize_renewal", job_id=self.jkey.id(), token=self.token)
                    if not txns.run_in_transaction(self.rt.store, self._renew):
                        return
                except Exception:  # the next round tries again; the lease has slack
                    logger.warning(
                        "job=%s finalize lease not renewed", self.jkey.id(), exc_info=True
                    )

    def _renew(self, t: txns.Txn) -> bool:
        job = t.get(self.jkey)[0]
        if job is None or not job.holds_finalize(self.token):
            return False
        job.renew_finalize(self.rt.settings.lease_seconds)
        t.put(job)
        return True
