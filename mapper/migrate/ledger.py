"""The ledger: one record per migration applied in this environment, and the lock on it."""

from __future__ import annotations

import datetime
import enum
import getpass
import socket
import uuid
from typing import TYPE_CHECKING, Any

from google.cloud import ndb

from mapper.datastore import txn as txns
from mapper.engine.records import utcnow
from mapper.errors import JobStateError

if TYPE_CHECKING:
    from mapper.engine.runtime import Runtime


class MigrationStatus(enum.StrEnum):
    """A ledger entry's state; a migration with no entry is pending."""

    RUNNING = "running"
    FAILED = "failed"
    APPLIED = "applied"
    ROLLED_BACK = "rolled_back"


class _MapperMigration(ndb.Model):
    """One migration in the ledger. Key name: the migration's name (``0001_fill_domain``)."""

    package = ndb.TextProperty()
    checksum = ndb.TextProperty()
    status = ndb.TextProperty(default=MigrationStatus.RUNNING.value)
    #: Counts the times it was applied: a rolled-back migration applies anew (new job ids).
    run = ndb.IntegerProperty(indexed=False, default=1)
    #: The job (or import) id of each step started, in order.
    job_ids = ndb.JsonProperty(default=[])
    steps_done = ndb.IntegerProperty(indexed=False, default=0)
    counters = ndb.JsonProperty(default={})
    started = ndb.DateTimeProperty(indexed=False)
    finished = ndb.DateTimeProperty(indexed=False)
    by = ndb.TextProperty()
    error = ndb.TextProperty()
    #: Where its before-images are (``--backup``), or None.
    backup = ndb.TextProperty()
    rolled_back = ndb.DateTimeProperty(indexed=False)
    rolled_back_by = ndb.TextProperty()

    @property
    def migration_status(self) -> MigrationStatus:
        return MigrationStatus(self.status)

    @property
    def name(self) -> str:
        return str(self.key.id())

    def job_id(self, step: int) -> str:
        """The deterministic id of ``step``'s job in this run: a re-run finds the same job."""
        return f"migrate-{self.name}-r{self.run or 1}-s{step}"


class _MapperMigrationLock(ndb.Model):
    """Held by the process applying migrations. Key name: ``ledger``."""

    token = ndb.TextProperty()
    by = ndb.TextProperty()
    since = ndb.DateTimeProperty(indexed=False)
    until = ndb.DateTimeProperty(indexed=False)


def who() -> str:
    """Who applies: ``user@host`` (or MAPPER_MIGRATE_BY, or an HTTP caller's identity)."""
    try:
        user = getpass.getuser()
    except Exception:  # no login name in some containers
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def entry_key(rt: Runtime, name: str) -> ndb.Key:
    return ndb.Key(_MapperMigration, name, namespace=rt.settings.state_namespace)


def read_entries(rt: Runtime, names: list[str]) -> dict[str, _MapperMigration]:
    with rt.context():
        found = txns.get(rt.store, *[entry_key(rt, n) for n in names]) if names else []
    return {e.name: e for e in found if e is not None}


def save(rt: Runtime, entry: _MapperMigration) -> None:
    with rt.context():
        txns.run_in_transaction(rt.store, lambda t: t.put(entry))


class LedgerBusy(JobStateError):
    """Another process holds the ledger."""


class LedgerLock:
    """The ledger's lock, taken in a transaction, held for ``seconds`` and renewed.

    A holder that died leaves it to expire: another ``--apply`` then takes it and
    goes on with the same jobs (their ids are deterministic).
    """

    def __init__(self, rt: Runtime, by: str, seconds: float = 60.0):
        self.rt, self.by, self.seconds = rt, by, seconds
        self.token = uuid.uuid4().hex
        with rt.context():  # an ndb key needs a context for its project
            ns = rt.settings.state_namespace
            self.key = ndb.Key(_MapperMigrationLock, "ledger", namespace=ns)

    def try_take(self) -> _MapperMigrationLock | None:
        """Take or renew the lock; returns the other holder's record if it is held."""

        def fn(t: txns.Txn) -> _MapperMigrationLock | None:
            lock = t.get(self.key)[0]
            now = utcnow()
            if lock is not None and lock.token != self.token and lock.until and lock.until > now:
                return lock
            if lock is None or lock.token != self.token:
                lock = _MapperMigrationLock(key=self.key, token=self.token, by=self.by, since=now)
            lock.until = now + datetime.timedelta(seconds=self.seconds)
            t.put(lock)
            return None

        with self.rt.context():
            return txns.run_in_transaction(self.rt.store, fn)

    def holder(self) -> _MapperMigrationLock | None:
        """The record of whoever else holds the lock now (None: it is free)."""
        with self.rt.context():
            lock = txns.get(self.rt.store, self.key)[0]
        if lock is None or lock.token == self.token or not lock.until or lock.until <= utcnow():
            return None
        return lock  # type: ignore[no-any-return]

    def renew(self) -> None:
        holder = self.try_take()
        if holder is not None:
            raise LedgerBusy(f"the migrations ledger was taken over by {holder.by}")

    def release(self) -> None:
        def fn(t: txns.Txn) -> None:
            lock = t.get(self.key)[0]
            if lock is not None and lock.token == self.token:
                t.deletes.append(txns.key_pb(self.key))

        with self.rt.context():
            txns.run_in_transaction(self.rt.store, fn)


def busy_message(holder: Any) -> str:
    since = holder.since.replace(tzinfo=datetime.UTC).isoformat() if holder.since else "?"
    return (
        f"migrations are being applied by {holder.by} (since {since}); "
        "wait for it (--wait SECONDS) or run --apply again later"
    )
