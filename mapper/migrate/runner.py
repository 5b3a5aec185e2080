"""Listing, applying, auditing and rolling back the migrations of a package against the ledger."""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mapper.engine.records import utcnow
from mapper.engine.status import job_status, json_ready, sum_counters
from mapper.errors import JobStateError, NotFoundError
from mapper.migrate import backup
from mapper.migrate.ledger import (
    LedgerBusy,
    LedgerLock,
    MigrationStatus,
    _MapperMigration,
    busy_message,
    entry_key,
    read_entries,
    save,
)
from mapper.migrate.package import Migration, load_package

if TYPE_CHECKING:
    from mapper.engine.runtime import Runtime

logger = logging.getLogger(__name__)

#: How a migration stands: pending (no entry, or rolled back), applied, changed (applied,
#: its source edited since), running, failed.
STATES = ("pending", "running", "failed", "applied", "changed")


@dataclasses.dataclass(frozen=True)
class MigrationInfo:
    """One migration as the ledger and the package see it."""

    name: str
    state: str
    steps: str
    checksum: str
    applied_checksum: str | None = None
    job_ids: tuple[str, ...] = ()
    started: str | None = None
    finished: str | None = None
    by: str | None = None
    counters: dict[str, int] = dataclasses.field(default_factory=dict)
    error: str | None = None
    backup: str | None = None
    rolled_back: str | None = None

    @property
    def pending(self) -> bool:
        return self.state in ("pending", "running", "failed")

    def to_json(self) -> dict[str, Any]:
        return json_ready(self)


@dataclasses.dataclass(frozen=True)
class LedgerInfo:
    """The package's migrations in order, and what an apply did (if it ran)."""

    package: str
    migrations: tuple[MigrationInfo, ...]
    #: Set by an apply: the names it applied now, and the one that failed (if any).
    applied_now: tuple[str, ...] = ()
    failed: str | None = None

    @property
    def pending(self) -> tuple[MigrationInfo, ...]:
        return tuple(m for m in self.migrations if m.pending)

    def to_json(self) -> dict[str, Any]:
        data = json_ready(self)
        data["pending"] = [m.name for m in self.pending]
        data["changed"] = [m.name for m in self.migrations if m.state == "changed"]
        return data


def _ledger_status(rt: Runtime, package: str) -> LedgerInfo:
    """Every migration of ``package``: pending, running, failed, applied or changed."""
    migrations = load_package(package)
    entries = read_entries(rt, [m.name for m in migrations])
    return LedgerInfo(package, tuple(_info(m, entries.get(m.name)) for m in migrations))


def _info(migration: Migration, entry: _MapperMigration | None) -> MigrationInfo:
    base = MigrationInfo(migration.name, "pending", migration.describe(), migration.checksum)
    if entry is None:
        return base
    status = entry.migration_status
    state = {
        MigrationStatus.RUNNING: "running",
        MigrationStatus.FAILED: "failed",
        MigrationStatus.ROLLED_BACK: "pending",
    }.get(status)
    if state is None:
        state = "applied" if entry.checksum == migration.checksum else "changed"
    return dataclasses.replace(
        base,
        state=state,
        applied_checksum=entry.checksum,
        job_ids=tuple(entry.job_ids or ()),
        started=_iso(entry.started),
        finished=_iso(entry.finished),
        by=entry.by,
        counters=dict(entry.counters or {}),
        error=entry.error,
        backup=entry.backup,
        rolled_back=_iso(entry.rolled_back),
    )


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat() + "Z"


# -- apply ---------------------------------------------------------------------------


Progress = Callable[[str], None]


def _apply(
    rt: Runtime,
    package: str,
    by: str,
    *,
    backup_root: str | None = None,
    wait_seconds: float = 0.0,
    progress: Progress | None = None,
    namespace: str | None = None,
) -> LedgerInfo:
    """Apply the pending migrations of ``package`` in order, each once, holding the ledger.

    A migration already applied never runs again (an edited one is reported as
    ``changed``). One that fails stops the sequence; applying again goes on with
    the same job from its checkpoints. While another process holds the ledger,
    wait up to ``wait_seconds`` for it, then raise LedgerBusy.
    """
    say = progress or (lambda _: None)
    # Every module is checked before anything is written.
    migrations = load_package(package, namespace)
    lock = LedgerLock(rt, by)
    _take(lock, wait_seconds, say)
    applied: list[str] = []
    failed = None
    try:
        entries = read_entries(rt, [m.name for m in migrations])
        for migration in migrations:
            entry = entries.get(migration.name)
            if entry is not None and entry.migration_status == MigrationStatus.APPLIED:
                if entry.checksum != migration.checksum:
                    say(f"{migration.name}: changed since it was applied; not run again")
                continue
            say(f"{migration.name}: applying ({migration.describe()})")
            entry = _run(rt, lock, package, migration, entry, by, backup_root, say)
            if entry.migration_status != MigrationStatus.APPLIED:
                failed = migration.name
                say(f"{migration.name}: failed: {entry.error}")
                break
            applied.append(migration.name)
            say(f"{migration.name}: applied {_counts(entry.counters)}")
    finally:
        lock.release()
    info = _ledger_status(rt, package)
    return dataclasses.replace(info, applied_now=tuple(applied), failed=failed)


def _take(lock: LedgerLock, wait_seconds: float, say: Progress) -> None:
    deadline = time.monotonic() + wait_seconds
    told = False
    while True:
        holder = lock.try_take()
        if holder is None:
            return
        if time.monotonic() >= deadline:
            raise LedgerBusy(busy_message(holder))
        if not told:
            say(f"waiting for {holder.by}, who holds the migrations ledger")
            told = True
        time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))


def _run(
    rt: Runtime,
    lock: LedgerLock,
    package: str,
    migration: Migration,
    entry: _MapperMigration | None,
    by: str,
    backup_root: str | None,
    say: Progress,
) -> _MapperMigration:
    """Run (or go on with) one migration's steps; returns its ledger entry."""
    entry = _begin(rt, package, migration, entry, by, backup_root)
    for index in range(entry.steps_done or 0, len(migration.steps)):
        step = migration.steps[index]
        job_id = entry.job_id(index)
        location = (
            backup.step_location(entry.backup, migration.name, entry.run or 1, index)
            if entry.backup
            else None
        )
        if job_id not in (entry.job_ids or []):
            entry.job_ids = [*(entry.job_ids or []), job_id]
            save(rt, entry)
        handle = step.start(rt, job_id, backup.hook_for(location) if location else None)
        say(f"  step {index}: {step.describe()} as {job_id}")
        info = _wait(handle, lock)
        entry.counters = sum_counters([dict(entry.counters or {}), _done_counts(info)])
        if info.status.value != "succeeded":
            entry.status = MigrationStatus.FAILED.value
            entry.error = f"step {index} ({job_id}): {info.error}"
            save(rt, entry)
            return entry
        if location:
            backup.seal(rt, location, job_id)
        entry.steps_done = index + 1
        save(rt, entry)
    entry.status = MigrationStatus.APPLIED.value
    entry.finished = utcnow()
    entry.error = None
    save(rt, entry)
    return entry


def _done_counts(info: Any) -> dict[str, int]:
    """A step's counters; a failed step's are added again when it is retried, so the
    ledger keeps those of finished steps only (the retried job counts every batch)."""
    return dict(info.counters) if info.status.value == "succeeded" else {}


def _begin(
    rt: Runtime,
    package: str,
    migration: Migration,
    entry: _MapperMigration | None,
    by: str,
    backup_root: str | None,
) -> _MapperMigration:
    now = utcnow()
    if entry is None or entry.migration_status == MigrationStatus.ROLLED_BACK:
        run = (entry.run or 1) + 1 if entry is not None else 1
        entry = _MapperMigration(
            key=entry_key(rt, migration.name), package=package, run=run, started=now
        )
        entry.backup = backup_root
    elif backup_root and entry.backup != backup_root and not entry.job_ids:
        entry.backup = backup_root
    entry.status = MigrationStatus.RUNNING.value
    entry.checksum = migration.checksum  # a failed one may have been fixed
    entry.by = by
    entry.error = None
    save(rt, entry)
    return entry


def _wait(handle: Any, lock: LedgerLock) -> Any:
    """Wait for a step's job, renewing the ledger lock as it runs."""
    last = [time.monotonic()]

    def renew(_: Any) -> None:
        if time.monotonic() - last[0] > lock.seconds / 4:
            lock.renew()
            last[0] = time.monotonic()

    return handle.wait(progress=renew)


def _counts(counters: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counters.items()))


# -- dry run -----------------------------------------------------------------------


def _dry_run(
    rt: Runtime,
    package: str,
    sample: int | None = None,
    namespace: str | None = None,
) -> list[dict[str, Any]]:
    """Audit every pending migration (or those named): per kind what each step would put,
    change, delete and leave unchanged, and a few diffs. Writes nothing to the data.

    Each migration is audited against the data as it is now, not as the pending
    migrations before it would leave it.
    """
    info = _ledger_status(rt, package)
    wanted = list(info.pending)
    migrations = {m.name: m for m in load_package(package, namespace)}
    reports = []
    for pending in wanted:
        migration = migrations[pending.name]
        steps = []
        for index, step in enumerate(migration.steps):
            job_id = f"migrate-dry-{migration.name}-s{index}-{uuid.uuid4().hex[:8]}"
            report = step.dry_run(rt, job_id, sample)
            if report.get("job"):
                report["diffs"] = _diffs(rt, report["job"])
            steps.append({"step": index, "describe": step.describe(), **report})
        reports.append({"name": migration.name, "steps": steps})
    return reports


def _diffs(rt: Runtime, job_id: str) -> list[dict[str, Any]]:
    return list(job_status(rt, job_id).diffs)


# -- rollback ------------------------------------------------------------------------


def _rollback(
    rt: Runtime, package: str, name: str, by: str, wait_seconds: float = 0.0
) -> dict[str, int]:
    """Give back what migration ``name`` changed (it must have run with a backup); the
    ledger marks it rolled back, and a later apply runs it anew."""
    migrations = {m.name: m for m in load_package(package)}
    if name not in migrations:
        raise NotFoundError(f"no migration {name!r} in {package!r}")
    later = [m for m in migrations if m > name]
    still = [n for n, e in read_entries(rt, later).items() if e.status == MigrationStatus.APPLIED]
    if still:
        raise JobStateError(f"roll back {', '.join(sorted(still))} first: applied after {name!r}")
    lock = LedgerLock(rt, by)
    _take(lock, wait_seconds, lambda _: None)
    try:
        entry = read_entries(rt, [name]).get(name)
        if entry is None or entry.migration_status == MigrationStatus.ROLLED_BACK:
            raise JobStateError(f"migration {name!r} is not applied: nothing to roll back")
        if entry.migration_status != MigrationStatus.APPLIED:
            raise JobStateError(
                f"migration {name!r} is {entry.status}: only an applied migration rolls back"
            )
        if not entry.backup:
            raise JobStateError(
                f"migration {name!r} ran without --backup: there are no before-images to restore"
            )
        totals: dict[str, int] = {}
        run = entry.run or 1
        for index in reversed(range(entry.steps_done or 0)):
            location = backup.step_location(entry.backup, name, run, index)
            if not backup.has_backup(location):
                raise JobStateError(f"no complete backup at {location!r}")
            restore_id = f"rollback-{name}-r{run}-s{index}"
            totals = sum_counters([totals, backup.restore(rt, location, restore_id)])
        entry.status = MigrationStatus.ROLLED_BACK.value
        entry.rolled_back = utcnow()
        entry.rolled_back_by = by
        save(rt, entry)
    finally:
        lock.release()
    return totals


# -- the public calls, each in an ndb context (ledger keys need one) ------------------


def ledger_status(rt: Runtime, package: str) -> LedgerInfo:
    """Every migration of ``package``: pending, running, failed, applied or changed."""
    with rt.context():
        return _ledger_status(rt, package)


def apply(rt: Runtime, package: str, by: str, **options: Any) -> LedgerInfo:
    """Apply the pending migrations in order (see ``_apply`` for ``options``)."""
    with rt.context():
        return _apply(rt, package, by, **options)


def dry_run(rt: Runtime, package: str, **options: Any) -> list[dict[str, Any]]:
    """Audit the pending migrations; nothing is written (see ``_dry_run``)."""
    with rt.context():
        return _dry_run(rt, package, **options)


def rollback(rt: Runtime, package: str, name: str, by: str, **options: Any) -> dict[str, int]:
    """Restore what migration ``name`` changed (see ``_rollback``)."""
    with rt.context():
        return _rollback(rt, package, name, by, **options)
