"""Durable state: the job and shard records, read and written by key only."""

from __future__ import annotations

import datetime
import enum
from typing import Any

from google.cloud import ndb

from mapper.engine.samples import add_sample, epoch
from mapper.errors import RetrySlice


class JobStatus(enum.StrEnum):
    """Where a job is in its life; stored as the string value."""

    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    FINALIZING = "finalizing"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    ABORTED = "aborted"

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.ABORTED)


class ShardStatus(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    FAILED = "failed"
    ABORTED = "aborted"

    @property
    def is_final(self) -> bool:
        return self in (ShardStatus.DONE, ShardStatus.FAILED, ShardStatus.ABORTED)


COUNTERS = ("processed", "put", "deleted")


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(tzinfo=None)


#: The newest format of the job and shard records this version reads. A record of a
#: newer format (written by a newer deploy) is never read as if it were this one.
RECORD_FORMAT = 3
#: A record is written as format 1 unless it needs more: a job with a rate budget
#: (``max_rate`` or ramp-up) is format 2, so a version from before throttling refuses it
#: instead of running it at full speed. Format-1 records read as unthrottled jobs.
BASE_FORMAT = 1
THROTTLED_FORMAT = 2
#: A job over many namespaces (its shards read work units): a version from before
#: them would read each shard as the whole kind of the default namespace.
UNITS_FORMAT = 3
#: The namespaces a shard keeps counters for; the smallest finished ones fold into "other".
NAMESPACE_COUNTERS_KEPT = 20


def check_format(record: Any) -> None:
    """Refuse a record a newer version wrote: its task is retried, for that version to run.

    Records from before the format was stored (no value) are format 1.
    """
    found = record.record_format or 1
    if found > RECORD_FORMAT:
        raise RetrySlice(
            f"{type(record).__name__} {record.key.id()!r} has record format {found}; "
            f"this mapper reads up to {RECORD_FORMAT}: a newer version must run it",
            delay=30.0,
        )


class _MapperJob(ndb.Model):
    """One job. Key name: the job id."""

    record_format = ndb.IntegerProperty(indexed=False, default=BASE_FORMAT)
    status = ndb.StringProperty(default=JobStatus.STARTING.value)
    mapper = ndb.TextProperty()
    params = ndb.JsonProperty(default={})
    namespace = ndb.TextProperty(default="")
    batch_size = ndb.IntegerProperty(indexed=False, default=100)
    exactly_once = ndb.BooleanProperty(indexed=False, default=False)
    #: An audit run (writes nothing); ``sample``: at most this many entities mapped.
    dry_run = ndb.BooleanProperty(indexed=False, default=False)
    sample = ndb.IntegerProperty(indexed=False)
    #: ``{"call": "module:function", ...}`` run before each batch's writes, or None.
    before_write = ndb.JsonProperty()
    shards_requested = ndb.IntegerProperty(indexed=False, default=1)
    #: Shard ranges as [[start_key_bytes_hex | None, end_key_bytes_hex | None], ...].
    ranges = ndb.JsonProperty(default=[])
    split = ndb.TextProperty(default="")
    generation = ndb.IntegerProperty(indexed=False, default=0)
    error = ndb.TextProperty()
    failed_key = ndb.TextProperty()
    failed_shard = ndb.IntegerProperty(indexed=False)
    totals = ndb.JsonProperty(default={})
    #: The copy of the finalize task running finish(), its lease, and how many ran it.
    finalize_token = ndb.TextProperty()
    finalize_lease_until = ndb.DateTimeProperty(indexed=False)
    finalize_attempts = ndb.IntegerProperty(indexed=False, default=0)
    created = ndb.DateTimeProperty()
    updated = ndb.DateTimeProperty(indexed=False)
    finished = ndb.DateTimeProperty(indexed=False)
    #: The rate budget (mapper.engine.throttle): ops per second for the whole job (None:
    #: no limit), ramp-up on or off, and when the ramp's clock started (the job's last
    #: move to RUNNING: a start or a resume).
    max_rate = ndb.FloatProperty(indexed=False)
    ramp_up = ndb.BooleanProperty(indexed=False, default=False)
    ramp_started = ndb.DateTimeProperty(indexed=False)
    #: A job over many namespaces: how they were chosen (all, a prefix, a list) and the
    #: list taken at start (None: a job over ``namespace`` alone).
    all_namespaces = ndb.BooleanProperty(indexed=False, default=False)
    namespace_prefix = ndb.TextProperty()
    namespaces = ndb.JsonProperty(compressed=True)
    #: The plan: each shard's work units (mapper.engine.units.Unit as JSON), set with
    #: ``ranges`` (one ``[None, None]`` per shard then).
    units = ndb.JsonProperty(compressed=True)
    namespace_counters = ndb.BooleanProperty(indexed=False, default=False)
    #: Namespaces that appeared after the start (reported by finalize, not read): a
    #: count and the first few names.
    namespaces_added = ndb.JsonProperty()

    @property
    def many_namespaces(self) -> bool:
        return (
            bool(self.all_namespaces)
            or self.namespace_prefix is not None
            or (self.namespaces is not None)
        )

    @property
    def job_status(self) -> JobStatus:
        return JobStatus(self.status)

    @property
    def job_id(self) -> str:
        return str(self.key.id())

    def move_to(self, status: JobStatus) -> None:
        """Take ``status``; a final one also stamps ``finished``, a move to RUNNING
        (a start, a resume) starts the ramp's clock."""
        if status == JobStatus.RUNNING and self.status != JobStatus.RUNNING.value:
            self.ramp_started = utcnow()
        self.status = status.value
        self.updated = utcnow()
        if status.is_final:
            self.finished = self.updated

    def set_budget(self, max_rate: float | None, ramp_up: bool) -> None:
        """The job's rate budget (at start, or changed while it runs)."""
        self.max_rate = None if max_rate is None else float(max_rate)
        self.ramp_up = ramp_up
        throttled = self.max_rate is not None or ramp_up
        self.record_format = max(self.record_format or BASE_FORMAT, THROTTLED_FORMAT * throttled)
        self.updated = utcnow()

    def fail(self, message: str, failed_key: str | None, shard: int | None) -> None:
        """FAILED with the error, the key it happened at and the shard (None: finish())."""
        self.move_to(JobStatus.FAILED)
        self.error = message
        self.failed_key = failed_key
        self.failed_shard = shard

    # -- finalize: finish() run by one leased, fenced copy at a time ----------------

    def finalize_held(self) -> bool:
        """True while a copy of the finalize task holds an unexpired lease."""
        until = self.finalize_lease_until
        return self.job_status == JobStatus.FINALIZING and until is not None and until > utcnow()

    def claim_finalize(self, token: str, seconds: float, totals: dict[str, int]) -> None:
        """FINALIZING, held by ``token`` for ``seconds``: one more attempt of finish()."""
        self.move_to(JobStatus.FINALIZING)
        self.totals = totals
        self.finalize_token = token
        self.finalize_attempts = (self.finalize_attempts or 0) + 1
        self.renew_finalize(seconds)

    def holds_finalize(self, token: str) -> bool:
        return self.job_status == JobStatus.FINALIZING and self.finalize_token == token

    def renew_finalize(self, seconds: float) -> None:
        self.finalize_lease_until = utcnow() + datetime.timedelta(seconds=seconds)

    def reopen(self) -> None:
        """A FAILED job runs again: RUNNING, a new generation, the error cleared."""
        self.move_to(JobStatus.RUNNING)
        self.finished = None
        self.generation = (self.generation or 0) + 1
        self.error = self.failed_key = self.failed_shard = None
        self.finalize_token = self.finalize_lease_until = None
        self.finalize_attempts = 0

    def finalize_failed(self, message: str, permanent: bool, max_attempts: int) -> bool:
        """Record a failed finish(); True when the job gives up (FAILED)."""
        self.finalize_token = None
        self.finalize_lease_until = None
        self.error = message
        self.updated = utcnow()
        if permanent or (self.finalize_attempts or 0) >= max_attempts:
            self.fail(message, None, None)
            return True
        return False


class _MapperShard(ndb.Model):
    """One shard of a job. Key name: ``{job_id}-{index}``."""

    record_format = ndb.IntegerProperty(indexed=False, default=BASE_FORMAT)
    job_id = ndb.TextProperty()
    index = ndb.IntegerProperty(indexed=False)
    status = ndb.TextProperty(default=ShardStatus.RUNNING.value)
    start_key = ndb.BlobProperty()
    end_key = ndb.BlobProperty()
    checkpoint = ndb.BlobProperty()
    slice = ndb.IntegerProperty(indexed=False, default=0)
    generation = ndb.IntegerProperty(indexed=False, default=0)
    lease_token = ndb.TextProperty()
    lease_until = ndb.DateTimeProperty(indexed=False)
    processed = ndb.IntegerProperty(indexed=False, default=0)
    put = ndb.IntegerProperty(indexed=False, default=0)
    deleted = ndb.IntegerProperty(indexed=False, default=0)
    counters = ndb.JsonProperty(default={})
    batches = ndb.IntegerProperty(indexed=False, default=0)
    attempts = ndb.IntegerProperty(indexed=False, default=0)
    last_error = ndb.TextProperty()
    failed_key = ndb.TextProperty()
    #: The last transition committed, named by its step (``"{lease token}/{what}"``): a
    #: transaction that finds its own step here already applied, though its commit
    #: answered an error (DEADLINE_EXCEEDED, UNAVAILABLE, INTERNAL after applying).
    last_step = ndb.TextProperty()
    updated = ndb.DateTimeProperty(indexed=False)
    #: ``[[epoch seconds, processed], ...]`` at checkpoints, bounded (mapper.engine.samples).
    samples = ndb.JsonProperty(default=[])
    #: An audit run's first before/after diffs, bounded (mapper.engine.audit.MAX_DIFFS).
    diffs = ndb.JsonProperty(default=[])
    #: Throttling: the ops per second its last slice measured (over its last 10 s), the
    #: rate it was allowed, and the seconds spent waiting for budget or backing off.
    rate = ndb.FloatProperty(indexed=False)
    allowed_rate = ndb.FloatProperty(indexed=False)
    throttled_seconds = ndb.FloatProperty(indexed=False, default=0.0)
    #: Epoch seconds before which the next slice may not write: the budget its
    #: predecessor spent is paid for then (a fresh slice must not burst).
    paced_until = ndb.FloatProperty(indexed=False)
    #: A shard of a job over many namespaces: the index of the work unit it reads now
    #: (its checkpoint is in it; the units are the job's), and per-namespace counters
    #: when the job asked for them.
    unit = ndb.IntegerProperty(indexed=False, default=0)
    namespace_counts = ndb.JsonProperty()

    @property
    def shard_status(self) -> ShardStatus:
        return ShardStatus(self.status)

    def owned_by(self, token: str, slice_number: int) -> bool:
        """True while the copy holding ``token`` for ``slice_number`` owns the shard."""
        return self.lease_token == token and self.slice == slice_number

    def applied(self, step: str | None) -> bool:
        """True when the transition named ``step`` is already committed."""
        return step is not None and self.last_step == step

    def lease(self, token: str, seconds: float) -> None:
        """Held by ``token`` for ``seconds`` (the slice that claims it runs)."""
        now = utcnow()
        self.status = ShardStatus.RUNNING.value
        self.lease_token = token
        self.lease_until = now + datetime.timedelta(seconds=seconds)
        self.updated = now

    def renew(self, seconds: float) -> None:
        """The holder keeps the lease ``seconds`` more (a long batch, before its side effects)."""
        self.lease_until = utcnow() + datetime.timedelta(seconds=seconds)

    def release(self) -> None:
        self.lease_token = None
        self.lease_until = None
        self.updated = utcnow()

    def advance(
        self,
        last: bytes | None,
        counts: dict[str, int],
        finished: bool,
        lease_seconds: float,
        step: str | None = None,
        unit: int | None = None,
    ) -> None:
        """One batch committed: checkpoint, counters, a fresh lease (or DONE).

        ``unit``: the work unit the checkpoint is in (a shard of a job over many
        namespaces); moving to another starts it from its beginning.
        """
        self.last_step = step
        if unit is not None and unit != (self.unit or 0):
            self.unit, self.checkpoint = unit, None
        if last is not None:
            self.checkpoint = last
        self.add_counts(counts)
        self.batches = (self.batches or 0) + 1
        self.attempts = 0
        self.updated = utcnow()
        self.samples = add_sample(self.samples, epoch(self.updated), self.processed or 0)
        self.lease_until = self.updated + datetime.timedelta(seconds=lease_seconds)
        if finished:
            self.status = ShardStatus.DONE.value
            self.release()

    def keep_diffs(self, diffs: list[dict[str, Any]], limit: int) -> None:
        """Keep an audit batch's diffs while the shard holds fewer than ``limit``."""
        self.diffs = (list(self.diffs or []) + diffs)[:limit]

    def reopen(self) -> None:
        """A FAILED shard runs again from its checkpoint (the job is retried)."""
        if self.shard_status == ShardStatus.FAILED:
            self.status = ShardStatus.RUNNING.value
        self.attempts = 0
        self.last_error = None
        self.failed_key = None
        self.release()

    def note_rate(self, rate: float | None, allowed: float | None, throttled: float) -> None:
        """A slice's measured and allowed rate, and ``throttled`` more seconds waited."""
        self.rate = None if rate is None else round(rate, 2)
        self.allowed_rate = None if allowed is None else round(allowed, 2)
        self.throttled_seconds = round((self.throttled_seconds or 0.0) + throttled, 3)

    def next_slice(self, step: str | None = None) -> None:
        """The time box ended: the next slice takes over, unleased."""
        self.last_step = step
        self.slice += 1
        self.release()

    def stop(self, status: ShardStatus, step: str | None = None) -> None:
        self.last_step = step
        self.status = status.value
        self.release()

    def record_failure(
        self,
        message: str,
        failed_key: str | None,
        permanent: bool,
        max_attempts: int,
        step: str | None = None,
    ) -> bool:
        """Count a failed attempt; True when the shard gives up (FAILED)."""
        self.last_step = step
        self.attempts = (self.attempts or 0) + 1
        self.last_error = message
        self.failed_key = failed_key
        self.release()
        if permanent or self.attempts >= max_attempts:
            self.status = ShardStatus.FAILED.value
            return True
        return False

    def add_counts(self, counts: dict[str, int]) -> None:
        """Add one batch's counts (committed together with its checkpoint)."""
        custom = dict(self.counters or {})
        for name, value in counts.items():
            if name in COUNTERS:
                setattr(self, name, (getattr(self, name) or 0) + value)
            else:
                custom[name] = custom.get(name, 0) + value
        self.counters = custom

    def add_namespace_counts(self, counts: dict[str, dict[str, int]], current: set[str]) -> None:
        """Add a batch's counters per namespace; past ``NAMESPACE_COUNTERS_KEPT`` the
        smallest namespaces not in ``current`` (read through: a shard reads a namespace's
        units one after another) fold into "other"."""
        kept = {n: dict(c) for n, c in (self.namespace_counts or {}).items()}
        for namespace, more in counts.items():
            mine = kept.setdefault(namespace, {})
            for name, value in more.items():
                mine[name] = mine.get(name, 0) + value
        done = [n for n in kept if n not in current and n != OTHER]
        done.sort(key=lambda n: kept[n].get("processed", 0))
        while len(kept) > NAMESPACE_COUNTERS_KEPT + 1 and done:
            folded = kept.pop(done.pop(0))
            other = kept.setdefault(OTHER, {})
            for name, value in folded.items():
                other[name] = other.get(name, 0) + value
        self.namespace_counts = kept

    def totals(self) -> dict[str, int]:
        return {**{n: getattr(self, n) or 0 for n in COUNTERS}, **(self.counters or {})}


#: The namespace counters' entry for the namespaces not kept one by one.
OTHER = "(other)"


def job_key(job_id: str, namespace: str) -> ndb.Key:
    return ndb.Key(_MapperJob, job_id, namespace=namespace)


def shard_key(job_id: str, index: int, namespace: str) -> ndb.Key:
    return ndb.Key(_MapperShard, f"{job_id}-{index}", namespace=namespace)


def sum_totals(shards: list[Any]) -> dict[str, int]:
    totals: dict[str, int] = {n: 0 for n in COUNTERS}
    for shard in shards:
        if shard is None:
            continue
        for name, value in shard.totals().items():
            totals[name] = totals.get(name, 0) + value
    return totals


#: The framework's own kinds (jobs, shards, exports, staged import parts): never user data.
INTERNAL_KINDS = frozenset(
    {
        "_MapperJob",
        "_MapperShard",
        "_MapperExport",
        "_MapperExportPart",
        "_MapperImportPart",
        "_MapperKeyMap",
        "_MapperKeyMapPart",
        "_MapperOrphan",
        "_MapperMigration",
        "_MapperMigrationLock",
    }
)
