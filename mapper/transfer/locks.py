"""Import locks: one remap import at a time writes a target namespace and kind.

Two remap imports into one namespace would each see a natural key or a name as
absent and both insert it. A lock per (target namespace, kind) is taken before
the first stage starts and released when the last one ends; a lock whose import
has ended (or never started, one lease after it was taken) is free.
"""

from __future__ import annotations

import datetime
import functools
import hashlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from google.cloud import ndb

from mapper.datastore import txn as txns
from mapper.engine.records import utcnow
from mapper.errors import JobStateError

if TYPE_CHECKING:
    from mapper.engine.runtime import Runtime

#: (target namespace, kind)
Target = tuple[str, str]
#: Whether an import still runs: True, False, or None when it has no job yet.
IsLive = Callable[[str], bool | None]


class _MapperImportLock(ndb.Model):
    """A target namespace and kind being written by one import (key name: their hash)."""

    holder = ndb.TextProperty()
    namespace = ndb.TextProperty()
    kind = ndb.TextProperty()
    taken = ndb.DateTimeProperty(indexed=False)


def lock_targets(params: dict[str, Any]) -> list[Target]:
    """The targets an import's stage params name (none for a keep import)."""
    return [(namespace, kind) for namespace, kind in params.get("locks", [])]


def lock_key(rt: Runtime, target: Target) -> ndb.Key:
    text = "\0".join((rt.settings.project, rt.settings.database, *target))
    name = hashlib.sha256(text.encode()).hexdigest()[:40]
    return ndb.Key(_MapperImportLock, name, namespace=rt.settings.state_namespace)


def acquire(rt: Runtime, import_id: str, targets: Sequence[Target], is_live: IsLive) -> None:
    """Take every target's lock for ``import_id`` (again, for a re-run: idempotent).

    Raises JobStateError naming the target and the import holding it; then this
    import holds none of the locks it took here.
    """
    taken: list[Target] = []
    with rt.context():
        for target in sorted(set(targets)):
            holder = _take(rt, import_id, target, is_live)
            if holder is not None:
                release(rt, import_id, taken)
                namespace, kind = target
                raise JobStateError(
                    f"{kind} in namespace {namespace!r} is being imported by {holder}: "
                    "run this import once that one has ended"
                )
            taken.append(target)


def release(rt: Runtime, import_id: str, targets: Sequence[Target]) -> None:
    """Free the targets' locks that ``import_id`` holds."""

    def free(t: txns.Txn, key: ndb.Key) -> None:
        lock = t.get(key)[0]
        if lock is not None and lock.holder == import_id:
            t.deletes.append(txns.key_pb(key))

    with rt.context():
        for target in targets:
            txns.run_in_transaction(rt.store, functools.partial(free, key=lock_key(rt, target)))


def _take(rt: Runtime, import_id: str, target: Target, is_live: IsLive) -> str | None:
    """Take one lock; None when taken, else the live import that holds it."""
    key = lock_key(rt, target)
    while True:
        held = txns.run_in_transaction(rt.store, lambda t: _claim(t, key, import_id, target))
        if held is None:
            return None
        if _is_live(rt, held, is_live):
            return str(held.holder)
        # The holder has ended: take the lock over, unless it changed hands meanwhile.
        take_over = functools.partial(
            _claim, key=key, import_id=import_id, target=target, replacing=held.holder
        )
        if txns.run_in_transaction(rt.store, take_over) is None:
            return None


def _claim(
    t: txns.Txn, key: ndb.Key, import_id: str, target: Target, replacing: str | None = None
) -> _MapperImportLock | None:
    """Take the lock if it is free, ours, or ``replacing``'s; else return it as held."""
    lock = t.get(key)[0]
    if lock is not None and lock.holder not in (import_id, replacing):
        return lock
    namespace, kind = target
    t.put(
        _MapperImportLock(key=key, holder=import_id, namespace=namespace, kind=kind, taken=utcnow())
    )
    return None


def _is_live(rt: Runtime, lock: _MapperImportLock, is_live: IsLive) -> bool:
    live = is_live(lock.holder)
    if live is not None:
        return live
    # No job yet: the holder is between taking its locks and starting (or died there).
    return bool(lock.taken + datetime.timedelta(seconds=rt.settings.lease_seconds) > utcnow())
