"""Slices: one time-boxed, fenced and leased run of a shard, checkpointed per batch."""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from google.api_core import exceptions as core_exceptions
from google.cloud import ndb

from mapper.datastore import txn as txns
from mapper.datastore.keys import key_bytes, key_from_bytes, key_repr
from mapper.datastore.query import STREAM_PAGE, EntityStream, shard_query, stream
from mapper.datastore.rpc import MAX_MUTATIONS, Key, bounded_batches, is_permanent
from mapper.dispatch.messages import FinalizeTask, SliceTask
from mapper.engine import audit
from mapper.engine.adapter import Adapter
from mapper.engine.loading import load_mapper_class
from mapper.engine.records import (
    JobStatus,
    ShardStatus,
    _MapperJob,
    _MapperShard,
    check_format,
    job_key,
    shard_key,
    utcnow,
)
from mapper.engine.throttle import Backoff, RampUp, ShardThrottle
from mapper.engine.units import Unit, UnitStream
from mapper.errors import PermanentSliceError, RetrySlice, WriteConflict

if TYPE_CHECKING:
    from mapper.engine.runtime import Runtime

logger = logging.getLogger(__name__)

#: Rounds of read, map and conditional write for entities an app keeps changing.
CONFLICT_ROUNDS = 5
#: A batch held back by the back-off waits this long (or one batch of its rate) at a time.
BACKOFF_PAUSE = 0.2
#: A checkpoint's transaction begun while its batch ran is used if the batch took less
#: (an idle transaction expires: after 60 s on Firestore).
BEGUN_AHEAD_SECONDS = 20.0


class _LeaseLost(Exception):
    """Another copy of this slice owns the shard now: stop without writing state."""


def run_slice(rt: Runtime, task: SliceTask) -> None:
    """Run one slice task; return for "done" (2xx), raise RetrySlice for "later"."""
    ns = rt.settings.state_namespace
    job = txns.get(rt.store, job_key(task.job_id, ns))[0]
    if job is None:
        logger.warning("slice for unknown job %s ignored", task.job_id)
        return
    check_format(job)
    claimed_at = time.monotonic()  # the lease runs from (a little after) here
    claim = _acquire(rt, task, job)
    if claim is None:
        return
    runner = _SliceRunner(rt, job, task, claim, claimed_at)
    try:
        runner.run()
    except RetrySlice:
        raise
    except _LeaseLost as lost:
        logger.warning("slice %s/%d/%d stops: %s", task.job_id, task.shard, task.slice, lost)
    except Exception as error:
        runner.fail(error)


def _acquire(rt: Runtime, task: SliceTask, seen: _MapperJob) -> tuple[_MapperShard, str] | None:
    """Fence the task and take the shard's lease; None means "nothing to do".

    ``seen`` is the job record as read just before. A running job's is not read again
    in the transaction: the shards of a job start at once, and on the Datastore
    emulator their claims, each reading the one job record in its transaction,
    aborted each other in turn (a second and more per shard before any work). A pause
    or abort that lands after ``seen`` was read is seen by the first batch's stop
    check, as it would be had it landed just after the claim.
    """
    ns = rt.settings.state_namespace
    token = uuid.uuid4().hex
    jkey, skey = job_key(task.job_id, ns), shard_key(task.job_id, task.shard, ns)
    running = seen.job_status == JobStatus.RUNNING

    def claim(t: txns.Txn) -> tuple[str, Any]:
        job, shard = (seen, t.get(skey)[0]) if running else t.get(jkey, skey)
        if job is None or shard is None:
            return "missing", None
        if task.slice > shard.slice:
            raise RetrySlice(f"slice {task.slice} is ahead of shard at {shard.slice}")
        status = job.job_status
        if shard.shard_status.is_final:
            return "final", shard
        if task.slice < shard.slice:
            return "stale", shard
        if status in (JobStatus.ABORTED, JobStatus.PAUSED):
            shard.stop(ShardStatus(status.value))
            t.put(shard)
            return "stopped", shard
        if status != JobStatus.RUNNING:
            return "stopped", shard
        if shard.lease_token == token:  # this claim applied; its answer was lost
            return "run", shard
        now = utcnow()
        if shard.lease_token and shard.lease_until and shard.lease_until > now:
            wait = (shard.lease_until - now).total_seconds()
            raise RetrySlice("another copy of this slice holds the lease", delay=min(wait, 5.0))
        shard.lease(token, rt.settings.lease_seconds)
        t.put(shard)
        return "run", shard

    outcome, shard = txns.run_in_transaction(rt.store, claim)
    if outcome == "stale" and task.slice == shard.slice - 1:
        # Redelivered after its checkpoint: make sure the chain goes on.
        rt.dispatcher.enqueue(_successor(shard))
    elif outcome == "final" and shard.shard_status == ShardStatus.DONE:
        maybe_finalize(rt, task.job_id)
    if outcome != "run":
        logger.info(
            "slice %s/%d/%d: %s, nothing to do", task.job_id, task.shard, task.slice, outcome
        )
        return None
    return shard, token


def _successor(shard: _MapperShard) -> SliceTask:
    return SliceTask(shard.job_id, shard.index, shard.slice, shard.generation or 0)


def maybe_finalize(rt: Runtime, job_id: str) -> None:
    """Enqueue the job's finalize task if every shard is done (idempotent by name)."""
    ns = rt.settings.state_namespace
    job = txns.get(rt.store, job_key(job_id, ns))[0]
    if job is None or job.job_status.is_final:
        return
    shards = txns.get(rt.store, *[shard_key(job_id, i, ns) for i in range(len(job.ranges))])
    if all(s is not None and s.shard_status == ShardStatus.DONE for s in shards):
        rt.dispatcher.enqueue(FinalizeTask(job_id, job.generation or 0))


class _SliceRunner:
    """Runs batches until the shard is done, the time box ends, or the job stops."""

    def __init__(
        self,
        rt: Runtime,
        job: _MapperJob,
        task: SliceTask,
        claim: tuple[Any, str],
        claimed_at: float,
    ):
        self.rt = rt
        self.job = job
        self.task = task
        self.shard, self.token = claim
        ns = rt.settings.state_namespace
        self.jkey = job_key(task.job_id, ns)
        self.skey = shard_key(task.job_id, task.shard, ns)
        self.batches = 0
        self.started = time.monotonic()
        mapper = load_mapper_class(job.mapper)(**(job.params or {}))
        self.adapter = Adapter(mapper).bind(task.job_id, task.shard, rt)
        #: Until when (monotonic) this copy surely holds the lease: every checkpoint and
        #: renewal extends it, reckoned from before its transaction began.
        self.lease_expires = claimed_at + rt.settings.lease_seconds
        if not job.exactly_once:  # an exactly-once batch is fenced by its own transaction
            self.adapter.guard = self._hold_lease
        self.blind = bool(getattr(mapper, "BLIND_WRITES", False))
        #: A bound on a batch's bytes as read (an export's), besides its count.
        self.batch_bytes: int | None = getattr(mapper, "BATCH_BYTES", None)
        #: The puts of the exactly-once batch in its transaction (a refused commit names one).
        self._puts: list[Any] = []
        #: Entities mapped and audit diffs kept by this copy (a sampled dry run stops on them).
        self._processed = 0
        self._diffs = 0
        self.writes = self.adapter.writes
        self.throttle = _throttle_for(rt, job, self._active_shards)
        if self.shard.paced_until:  # the predecessor's budget, still being paid for
            self.throttle.pacer.wait_until(self.shard.paced_until - time.time())
        #: Seconds throttled that the shard record already counts.
        self._throttled_noted = 0.0
        #: The job record, read beside the last checkpoint for the stop check after it.
        self._job_read: Callable[[], list[Any]] | None = None

    # -- the loop ---------------------------------------------------------------

    def run(self) -> None:
        self.filters = self.adapter.filter_pbs()
        self.kind = self.adapter.kind_name()
        self.start_key = key_from_bytes(self.shard.start_key)
        self.end_key = key_from_bytes(self.shard.end_key)
        #: A job over many namespaces: this shard's work units (mapper.engine.units).
        self.units: list[Unit] | None = None
        if self.job.many_namespaces:
            planned = (self.job.units or [])[self.task.shard]
            self.units = [Unit.from_json(unit) for unit in planned]
        with ndb.get_context().new(namespace=self.job.namespace).use():
            if self.job.exactly_once and not self.job.dry_run:  # a dry run writes nothing
                self._run_exactly_once()
            else:
                self._run_default()

    def _stream(self, keys_only: bool = False) -> EntityStream | UnitStream:
        """The shard's range (or work units) after its checkpoint, as one query stream."""
        after = key_from_bytes(self.shard.checkpoint)
        if self.units is not None:
            return UnitStream(
                functools.partial(self._open_unit, keys_only=keys_only),
                len(self.units),
                self.shard.unit or 0,
                after,
                per_unit=bool(getattr(self.adapter.mapper, "ONE_NAMESPACE_A_BATCH", False)),
                sizes=[unit.size for unit in self.units],
            )
        query = shard_query(
            self.kind, self.filters, self.start_key, self.end_key, after, None, keys_only
        )
        return stream(self.rt.store, query, self.job.namespace)

    def _open_unit(self, index: int, after: Any | None, keys_only: bool) -> EntityStream:
        unit = self.units[index]  # type: ignore[index]
        start, end = key_from_bytes(unit.start), key_from_bytes(unit.end)
        query = shard_query(self.kind, self.filters, start, end, after, None, keys_only)
        # Read ahead, a unit's first page is asked for early: no larger than the unit was
        # when planned (a tenant grown since goes on in further pages).
        page = min(STREAM_PAGE, max(unit.size + 1, self.job.batch_size))
        return stream(self.rt.store, query, unit.namespace, page)

    def _run_default(self) -> None:
        entities = self._stream()
        try:
            self._run_batches(entities)
        finally:
            entities.close()  # pages asked for ahead and no longer wanted are cancelled

    def _run_batches(self, entities: EntityStream | UnitStream) -> None:
        while True:
            done = self._run_batch(entities)
            if done is None:
                return
            self._checkpoint(done)
            if self._should_stop(done.finished):
                return

    def _run_batch(self, entities: EntityStream | UnitStream) -> _Batch | None:
        """Take, map and write one batch (None: the throttle ended the slice first)."""
        self._fault("before_batch")
        budget = self._await_budget(self.job.batch_size, sleep=False)
        if budget is None:
            return None
        size, rate, due = budget
        left = self._sample_left()
        if left is not None:
            size = min(size, left)
        results = entities.take_results(size, self.batch_bytes)
        # The checkpoint's transaction is begun now, its answer awaited at the end.
        begun: Callable[[], bytes] | None = self.rt.store.begin_transaction_async()
        begun_at = time.monotonic()
        number = self._number()
        batch = [result.entity for result in results]
        counts = {"processed": 0}
        diffs: list[dict[str, Any]] = []
        cost = 0
        puts: list[Any] = []
        deletes: list[Any] = []
        if batch:
            puts, deletes, counts = self._map(batch)
            self._fault("after_map")
            cost = len(puts) + len(deletes) if self.writes else len(batch)
            self._sleep_until(due)  # here, so the write leaves at its paced time
            if cost:
                self._back_off(cost, rate)
            self._hold_lease()
            if rate is not None and cost:
                self.throttle.pacer.sent(cost, rate)
            if self.job.dry_run:
                diffs = self._audit(results, puts, deletes, counts)
            else:
                self._write(puts, deletes, counts, results)
                self.adapter.after_write()
            self._fault("after_write")
        self.throttle.spent(size, cost, rate)
        if begun is not None and time.monotonic() - begun_at > BEGUN_AHEAD_SECONDS:
            self._forget(begun)  # begun too long ago to rely on: begin anew
            begun = None
        return _Batch(
            number=number,
            last=batch[-1].key if batch else None,
            counts=counts,
            # A look ahead: the next page has had the whole batch's time to arrive.
            finished=entities.exhausted() or (left is not None and left <= len(batch)),
            diffs=diffs,
            position=getattr(entities, "position", None),
            by_namespace=self._namespace_counts(batch, puts, deletes) if batch else {},
            records=self.adapter.take_records(),
            begun=begun,
        )

    def _sample_left(self) -> int | None:
        """How many more entities this shard maps in a sampled dry run (None: all)."""
        sample = self.job.sample
        if not self.job.dry_run or sample is None:
            return None
        shards, index = len(self.job.ranges), self.task.shard
        share = sample // shards + (1 if index < sample % shards else 0)
        return max(0, share - (self.shard.processed or 0) - self._processed)

    def _audit(
        self, results: list[Any], puts: list[Any], deletes: list[Any], counts: dict[str, int]
    ) -> list[dict[str, Any]]:
        """A dry run's batch: count what the writes would do, keep a few diffs; write nothing."""
        room = max(0, audit.MAX_DIFFS - len(self.shard.diffs or []) - self._diffs)
        more, diffs = audit.audit_batch(self.rt, results, puts, deletes, room)
        counts.update({k: counts.get(k, 0) + v for k, v in more.items()})
        return diffs

    def _run_exactly_once(self) -> None:
        entities = self._stream(keys_only=True)
        try:
            self._run_exactly_once_batches(entities)
        finally:
            entities.close()

    def _run_exactly_once_batches(self, entities: EntityStream | UnitStream) -> None:
        size = self.job.batch_size
        while True:
            self._fault("before_batch")
            budget = self._await_budget(size)
            if budget is None:
                return
            take, rate, _ = budget
            batch = entities.take(take)
            finished = entities.exhausted()
            position = getattr(entities, "position", None)
            try:
                self._exactly_once_batch([e.key for e in batch], finished, position)
            except _BatchTooLarge as e:
                self.throttle.spent(take, 0, rate)
                if take == 1:
                    raise
                size = max(1, min(take - 1, e.fits or take // 2))
                logger.info("exactly-once batch shrinks to %d: %s", size, e)
                entities.put_back(batch)
                continue
            self.throttle.spent(take, len(batch), rate)
            if self._should_stop(finished):
                return

    def _exactly_once_batch(
        self, keys: list[Any], finished: bool, position: tuple[int, bytes | None] | None = None
    ) -> None:
        last = keys[-1] if keys else None
        unit, checkpoint = position if position is not None else (None, _bytes(last))
        step = self._step(f"batch {self._number()}")
        self._hold_lease()
        began = time.monotonic()

        def fn(t: txns.Txn) -> None:
            self._puts = []
            shard = self._owned(t, step)
            if shard is None:  # committed already: not mapped again
                return
            found = t.lookup_raw(keys)
            # An entity changed since the keys-only query no longer matching FILTERS is left alone.
            entities = [
                e for k in keys if (e := found.get(key_bytes(k))) and self.adapter.matches(e)
            ]
            puts, deletes, counts = self._map(entities)
            limit = self.rt.store.max_commit_bytes
            mutations = len(puts) + len(deletes) + 1  # and the shard record
            if mutations > MAX_MUTATIONS:
                # Production refuses it; the Firestore emulator does not (measured).
                fits = len(entities) * MAX_MUTATIONS // mutations
                raise _BatchTooLarge(f"{mutations} mutations exceed a commit's", fits)
            if len(list(bounded_batches(puts, deletes, limit))) > 1:
                raise _BatchTooLarge(f"{len(puts)} puts and {len(deletes)} deletes exceed a commit")
            self._fault("after_map")
            self._puts = puts
            t.put(*self.adapter.take_records())  # with the batch they describe
            t.upserts.extend(puts)
            t.deletes.extend(deletes)
            shard.advance(
                checkpoint,
                counts,
                finished,
                self.rt.settings.lease_seconds,
                step,
                unit,
            )
            if by_namespace := self._namespace_counts(entities, puts, deletes):
                shard.add_namespace_counts(by_namespace, self._reading_namespaces(unit))
            self._note_rate(shard)
            t.put(shard)

        try:
            txns.run_in_transaction(self.rt.store, fn)
            self.lease_expires = began + self.rt.settings.lease_seconds
            self.batches += 1
            self._throttled_noted = self.throttle.throttled_seconds
            self.adapter.after_write()
        except core_exceptions.InvalidArgument as e:
            # The Datastore emulator allows 25 entity groups per transaction.
            if "entity groups" in str(e) or "too many" in str(e).lower():
                raise _BatchTooLarge(str(e)) from e
            raise _naming_the_key(e, self._puts) from e
        self._fault("after_checkpoint")

    # -- one batch ----------------------------------------------------------------

    def _write(
        self, puts: list[Any], deletes: list[Any], counts: dict[str, int], results: list[Any]
    ) -> None:
        if self.job.before_write:
            batch = (results, puts, deletes)
            audit.before_write(self.rt, self.job, self.task.shard, self._number(), batch)
        self._write_checked(puts, deletes, counts, results)

    def _write_checked(
        self, puts: list[Any], deletes: list[Any], counts: dict[str, int], results: list[Any]
    ) -> None:
        """Write a batch, each entity it read conflict-checked against the version read.

        An entity the app changed in between is read again and mapped again (a few
        rounds at most), so the app's write is never lost and ``map`` sees the
        current entity; ``conflicts`` counts them. ``BLIND_WRITES = True`` skips it.
        """
        if not puts and not deletes:
            return
        if self.blind:
            self._store_write(puts, deletes)
            return
        versions = {key_bytes(r.entity.key): r.version for r in results}
        for _ in range(CONFLICT_ROUNDS):
            conflicted = self._store_write(puts, deletes, versions)
            if not conflicted:
                return
            counts["conflicts"] = counts.get("conflicts", 0) + len(conflicted)
            fresh = self.rt.store.lookup_results([Key.FromString(k) for k in conflicted])
            # An entity the app deleted meanwhile stays deleted: it is not mapped again.
            entities = [fresh[k].entity for k in conflicted if k in fresh]
            puts, deletes, more = self.adapter.remap(entities)
            for name, value in more.items():
                counts[name] = counts.get(name, 0) + value
            versions = {k: fresh[k].version for k in conflicted if k in fresh}
        raise WriteConflict(
            f"{len(conflicted)} entities kept changing under the job for {CONFLICT_ROUNDS} "
            "rounds of read, map and conditional write; the slice will be retried"
        )

    def _store_write(
        self, puts: list[Any], deletes: list[Any], versions: dict[bytes, int] | None = None
    ) -> list[bytes]:
        try:
            return self.rt.store.write(
                puts, deletes, versions, observe=self.throttle.backoff.observe
            )
        except core_exceptions.InvalidArgument as e:
            raise _naming_the_key(e, puts) from e

    def _map(self, entities: list[Any]) -> tuple[list[Any], list[Any], dict[str, int]]:
        return self.adapter.map_batch(entities, self._number())

    def _number(self) -> int:
        """The shard's number for the batch in hand (``end_batch`` gets it)."""
        return (self.shard.batches or 0) + self.batches

    def _step(self, what: str) -> str:
        """A transition's name: this copy's lease token and what it does."""
        return f"{self.token}/{what}"

    def _owned(self, t: txns.Txn, step: str) -> _MapperShard | None:
        """The shard record if this copy owns it; None if ``step`` is committed already.

        A commit can apply and still answer an error; ``run_in_transaction`` then runs
        the body again, which must find its own step and not apply it twice.
        """
        shard = t.get(self.skey)[0]
        if shard is not None and shard.applied(step):
            return None
        if shard is None or not shard.owned_by(self.token, self.task.slice):
            raise _LeaseLost(f"shard {self.skey.id()} changed hands")
        return shard

    def _checkpoint(self, done: _Batch) -> None:
        """Commit a batch in one transaction (begun while the batch ran): checkpoint
        (``position`` in a shard of work units: the unit and the last key taken from
        it), counters, a fresh lease, and the records the mapper left for it.

        The job record, which the stop check after it reads, is read at the same time.
        """
        step = self._step(f"batch {done.number}")
        unit, checkpoint = done.position if done.position is not None else (None, _bytes(done.last))

        def fn(t: txns.Txn) -> None:
            shard = self._owned(t, step)
            if shard is None:
                return
            if done.diffs:
                shard.keep_diffs(done.diffs, audit.MAX_DIFFS)
            shard.advance(
                checkpoint,
                done.counts,
                done.finished,
                self.rt.settings.lease_seconds,
                step,
                unit,
            )
            if done.by_namespace:
                shard.add_namespace_counts(done.by_namespace, self._reading_namespaces(unit))
            self._note_rate(shard)
            t.put(shard, *done.records)

        began = time.monotonic()
        if not done.finished:
            self._job_read = txns.get_async(self.rt.store, self.jkey)
        txns.run_in_transaction(self.rt.store, fn, begun=done.begun)
        self.lease_expires = began + self.rt.settings.lease_seconds
        self.batches += 1
        self._processed += done.counts.get("processed", 0)
        self._diffs += len(done.diffs or [])
        self._throttled_noted = self.throttle.throttled_seconds
        self._fault("after_checkpoint")

    def _forget(self, begun: Callable[[], bytes]) -> None:
        """Roll back a transaction begun ahead and not used (it read nothing: no locks)."""
        try:
            self.rt.store.rollback(begun())
        except core_exceptions.GoogleAPICallError as error:
            logger.info("a transaction begun ahead was not rolled back: %s", error)

    def _namespace_counts(
        self, batch: list[Any], puts: list[Any], deletes: list[Any]
    ) -> dict[str, dict[str, int]]:
        """A batch's processed, put and deleted per namespace (when the job asked)."""
        if not self.job.namespace_counters:
            return {}
        counts: dict[str, dict[str, int]] = {}
        for name, keys in (
            ("processed", [e.key for e in batch]),
            ("put", [e.key for e in puts]),
            ("deleted", deletes),
        ):
            for key in keys:
                mine = counts.setdefault(key.partition_id.namespace_id, {})
                mine[name] = mine.get(name, 0) + 1
        return counts

    def _reading_namespaces(self, unit: int | None) -> set[str]:
        """The namespaces of the unit read now and the next: their counters stay apart."""
        if self.units is None or unit is None:
            return set()
        return {u.namespace for u in self.units[unit : unit + 2]}

    # -- throttling -----------------------------------------------------------------

    def _await_budget(
        self, most: int, sleep: bool = True
    ) -> tuple[int, float | None, float] | None:
        """Reserve the budget of the next batch; returns its size, the shard's rate and
        when (monotonic) its write may go, having waited for it unless ``sleep`` is False.

        A wait longer than ``throttle_max_wait`` (or a quarter lease, or the rest of
        the time box) is not slept through: the slice ends and its successor is
        enqueued with that delay (None).
        """
        size = self.throttle.batch_size(most)
        wait, rate = self.throttle.reserve(size)
        now = time.monotonic()
        if wait <= 0 or rate is None:
            return size, rate, now
        settings = self.rt.settings
        left = settings.slice_seconds - (time.monotonic() - self.started)
        if wait > min(settings.throttle_max_wait, settings.lease_seconds / 4, left):
            self.throttle.pacer.cancel(size, rate)
            self.throttle.waited(wait)
            self._end_slice(delay=wait)
            return None
        if sleep:
            self._sleep_until(now + wait)
        return size, rate, now + wait

    def _sleep_until(self, due: float) -> None:
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
            self.throttle.waited(wait)

    def _back_off(self, cost: int, rate: float | None) -> None:
        """Hold the write back while Datastore pushes back (the client-side rule)."""
        pause = max(0.05, cost / rate) if rate else BACKOFF_PAUSE
        settings = self.rt.settings
        most = min(settings.throttle_max_wait, settings.lease_seconds / 4)  # then write anyway
        held = 0.0
        while held < most and self.throttle.backoff.reject():
            self._fault("backoff")
            time.sleep(pause)
            held += pause
        self.throttle.waited(held)

    def _note_rate(self, shard: _MapperShard) -> None:
        """Put the slice's measured and allowed rate and its throttled time on the record."""
        shard.note_rate(
            self.throttle.measured_rate(self.started),
            self.throttle.shard_rate(),
            self.throttle.throttled_seconds - self._throttled_noted,
        )

    def _active_shards(self) -> int:
        """How many of the job's shards have yet to finish (they share its budget)."""
        ns = self.rt.settings.state_namespace
        keys = [shard_key(self.task.job_id, i, ns) for i in range(len(self.job.ranges))]
        shards = txns.get(self.rt.store, *keys)
        return sum(1 for s in shards if s is not None and not s.shard_status.is_final)

    def _hold_lease(self) -> None:
        """Before a side effect: stop if another copy owns the shard now; else make sure
        this copy holds the lease for at least half a lease more.

        Checkpoints renew the lease, so this costs a transaction only in a batch that
        has run for more than half a lease. A copy that outlasted its lease finds the
        shard changed hands and stops before writing anything.
        """
        seconds = self.rt.settings.lease_seconds
        if time.monotonic() < self.lease_expires - seconds / 2:
            return
        began = time.monotonic()

        def fn(t: txns.Txn) -> None:
            shard = t.get(self.skey)[0]
            if shard is None or not shard.owned_by(self.token, self.task.slice):
                raise _LeaseLost(f"shard {self.skey.id()} changed hands during a batch")
            shard.renew(seconds)
            t.put(shard)

        txns.run_in_transaction(self.rt.store, fn)
        self.lease_expires = began + seconds
        self._fault("lease_renewed")

    # -- stopping -----------------------------------------------------------------

    def _should_stop(self, finished: bool) -> bool:
        """After a checkpoint: stop if done, told to, or out of time."""
        if finished:
            self._log("shard done")
            maybe_finalize(self.rt, self.task.job_id)
            return True
        job = self._read_job()
        if job is None or job.job_status != JobStatus.RUNNING:
            self._stop(job.job_status if job is not None else JobStatus.ABORTED)
            return True
        if not self._carry_on(job):
            self._end_slice()
            return True
        return False

    def _read_job(self) -> _MapperJob | None:
        """The job record: as read beside the last checkpoint, else now."""
        read, self._job_read = self._job_read, None
        return (read() if read is not None else txns.get(self.rt.store, self.jkey))[0]

    def _carry_on(self, job: _MapperJob) -> bool:
        """Whether another batch follows: the job runs and the time box has room for it."""
        if job.job_status != JobStatus.RUNNING:
            return False
        self.throttle.update(job)  # a throttle command may have changed the budget
        elapsed = time.monotonic() - self.started
        per_batch = elapsed / max(1, self.batches)
        return elapsed + 2 * per_batch <= self.rt.settings.slice_seconds

    def _end_slice(self, delay: float | None = None) -> None:
        """Hand the shard to the next slice, enqueued ``delay`` seconds from now; it
        writes nothing before the budget this slice spent is paid for (``paced_until``)."""
        debt = self.throttle.pacer.debt()
        step = self._step(f"slice {self.task.slice} ends")

        def fn(t: txns.Txn) -> SliceTask:
            shard = self._owned(t, step)
            if shard is None:  # bumped already by this copy: its successor is still due
                task, generation = self.task, self.shard.generation or 0
                return SliceTask(task.job_id, task.shard, task.slice + 1, generation)
            self._note_rate(shard)
            shard.paced_until = time.time() + debt if debt else None
            shard.next_slice(step)
            t.put(shard)
            return _successor(shard)

        successor = txns.run_in_transaction(self.rt.store, fn)
        self._log("slice ends" + (f", next in {delay:.1f}s (waiting for budget)" if delay else ""))
        self._fault("before_enqueue")
        self.rt.dispatcher.enqueue(successor, delay or 0.0)

    def _stop(self, status: JobStatus) -> None:
        shard_status = ShardStatus.PAUSED if status == JobStatus.PAUSED else ShardStatus.ABORTED

        step = self._step(f"stop {shard_status.value}")

        def fn(t: txns.Txn) -> None:
            shard = self._owned(t, step)
            if shard is None:
                return
            shard.stop(shard_status, step)
            t.put(shard)

        txns.run_in_transaction(self.rt.store, fn)
        self._log(f"stopped: job is {status.value}")

    def fail(self, error: Exception) -> None:
        """Record a failed attempt; give up (job FAILED) when it cannot succeed."""
        permanent = is_permanent(error)
        current = self.adapter.current_key
        failed_key = getattr(error, "key", None) or (
            key_repr(current) if current is not None else None
        )
        message = f"{type(error).__name__}: {error}"
        step = self._step("failed")

        def fn(t: txns.Txn) -> bool:
            job, shard = t.get(self.jkey, self.skey)
            if shard is not None and shard.applied(step):
                return bool(shard.shard_status == ShardStatus.FAILED)
            if shard is None or shard.lease_token != self.token:
                return False
            give_up = shard.record_failure(
                message, failed_key, permanent, self.rt.settings.max_attempts, step
            )
            if give_up and job is not None and not job.job_status.is_final:
                job.fail(message, failed_key, self.task.shard)
                t.put(job)
            t.put(shard)
            return give_up

        gave_up = txns.run_in_transaction(self.rt.store, fn)
        if gave_up:
            logger.error(
                "job %s shard %d failed at key %s: %s",
                self.task.job_id,
                self.task.shard,
                failed_key,
                message,
            )
            return
        logger.warning(
            "job %s shard %d attempt failed: %s", self.task.job_id, self.task.shard, message
        )
        raise RetrySlice(message, delay=min(10.0, 0.2 * 2 ** (self.shard.attempts or 0)))

    # -- plumbing -------------------------------------------------------------------

    def _fault(self, point: str) -> None:
        self.rt.fault(
            point,
            job_id=self.task.job_id,
            shard=self.task.shard,
            slice=self.task.slice,
            batch=self.batches,
        )

    def _log(self, event: str) -> None:
        logger.info(
            "job=%s shard=%d slice=%d %s batches=%d seconds=%.2f",
            self.task.job_id,
            self.task.shard,
            self.task.slice,
            event,
            self.batches,
            time.monotonic() - self.started,
        )


@dataclasses.dataclass
class _Batch:
    """A batch mapped and written, for its checkpoint."""

    number: int
    last: Any
    counts: dict[str, int]
    finished: bool
    diffs: list[dict[str, Any]]
    position: tuple[int, bytes | None] | None
    by_namespace: dict[str, dict[str, int]]
    #: Records the mapper left for the checkpoint's transaction (an export's part record).
    records: list[Any]
    #: The checkpoint's transaction, begun while the batch ran (None: begin it then).
    begun: Callable[[], bytes] | None


class _BatchTooLarge(Exception):
    """An exactly-once batch does not fit one transaction: retry it smaller (``fits``, if known)."""

    def __init__(self, message: str, fits: int | None = None):
        super().__init__(message)
        self.fits = fits


#: Datastore's bound on an indexed string or bytes value.
MAX_INDEXED_BYTES = 1500


def _naming_the_key(error: Exception, puts: list[Any]) -> Exception:
    """A refused write as a PermanentSliceError naming the entity at fault, when one is.

    Datastore names the property ("longer than 1500 bytes"), not the entity: look
    for it among the puts (only once the write failed, so the hot path pays nothing).
    """
    for entity in puts:
        if any(_over_index_bound(v) for v in entity.properties.values()):
            return PermanentSliceError(str(error), key=key_repr(entity.key))
    return error


def _over_index_bound(value: Any) -> bool:
    which = value.WhichOneof("value_type")
    if which == "array_value":
        return any(_over_index_bound(v) for v in value.array_value.values)
    if which == "entity_value":
        return any(_over_index_bound(v) for v in value.entity_value.properties.values())
    if which not in ("string_value", "blob_value") or value.exclude_from_indexes:
        return False
    data = value.string_value.encode() if which == "string_value" else value.blob_value
    return len(data) > MAX_INDEXED_BYTES


def _bytes(key: Any | None) -> bytes | None:
    return None if key is None else key_bytes(key)


def _throttle_for(rt: Runtime, job: _MapperJob, count_active: Callable[[], int]) -> ShardThrottle:
    """A slice's throttle: the job's budget, the ramp of the settings, a fresh back-off."""
    settings = rt.settings
    throttle = ShardThrottle(
        rule=RampUp(settings.ramp_start_rate, settings.ramp_growth, settings.ramp_step_seconds),
        ramp_up=False,
        max_rate=None,
        ramp_started=None,
        backoff=Backoff(settings.backoff_window_seconds),
        count_active=count_active,
    )
    throttle.update(job)
    return throttle
