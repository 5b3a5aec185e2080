"""Transactions over the raw store, holding ndb records and raw entities together."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from google.api_core import exceptions as core_exceptions
from google.cloud import ndb
from google.cloud.ndb import model as ndb_model

from mapper.datastore.keys import key_bytes
from mapper.datastore.rpc import TRANSIENT, Store

logger = logging.getLogger(__name__)

T = TypeVar("T")


def key_pb(key: ndb.Key) -> Any:
    """An ndb key as a raw Key protobuf."""
    return key._key.to_protobuf()._pb


class Txn:
    """One attempt of a transaction: reads see it, writes commit at the end."""

    def __init__(self, store: Store, transaction: bytes):
        self.store = store
        self.id = transaction
        self.upserts: list[Any] = []
        self.deletes: list[Any] = []

    def get(self, *keys: ndb.Key) -> list[Any]:
        """Read records by key inside the transaction (None where missing)."""
        return _lookup_records(self.store, keys, self.id)

    def lookup_raw(self, keys: Sequence[Any]) -> dict[bytes, Any]:
        return self.store.lookup(keys, transaction=self.id)

    def put(self, *records: ndb.Model) -> None:
        for record in records:
            self.upserts.append(ndb_model._entity_to_protobuf(record)._pb)


#: How long a transaction keeps retrying ABORTED: past the 60 s after which Firestore
#: (and its emulator) drops an idle transaction's locks. A process killed inside a
#: transaction leaves its locks behind until then, and re-running the same command
#: must wait them out rather than fail.
LOCK_PATIENCE_SECONDS = 75.0


def run_in_transaction(
    store: Store,
    fn: Callable[[Txn], T],
    retries: int = 8,
    patience: float = LOCK_PATIENCE_SECONDS,
    begun: Callable[[], bytes] | None = None,
) -> T:
    """Run ``fn`` in a transaction and commit what it wrote; retry on contention.

    Transient errors are retried ``retries`` times, not counting ABORTED (contention,
    or a lock held by a transaction that will never finish): that is retried
    ``retries`` times and for as long as ``patience`` seconds from the first attempt.
    ``begun``: a transaction begun ahead (``Store.begin_transaction_async``), for the
    first attempt.
    """
    attempt = 0
    others = 0  # transient errors other than ABORTED: they alone count against ``retries``
    started = time.monotonic()
    warned = False
    while True:
        txn = Txn(store, begun() if begun is not None else store.begin_transaction())
        begun = None
        try:
            result = fn(txn)
            store.commit(txn.upserts, txn.deletes, transaction=txn.id)
            return result
        except TRANSIENT as e:
            store.rollback(txn.id)
            attempt += 1
            waited = time.monotonic() - started
            if isinstance(e, core_exceptions.Aborted):
                if attempt > retries and waited >= patience:
                    raise
            else:
                others += 1
                if others > retries:
                    raise
            if waited > 10 and not warned:
                warned = True
                logger.warning(
                    "a transaction has been retried for %.0fs (last: %s); a lock held by a "
                    "process stopped inside a transaction lasts until that transaction "
                    "expires, and this one waits up to %.0fs for it",
                    waited,
                    type(e).__name__,
                    patience,
                )
            delay = min(1.0, 0.02 * 2 ** min(attempt, 6)) * (0.5 + random.random())
            logger.debug("transaction retry %d after %s", attempt, e)
            time.sleep(delay)
        except BaseException:
            store.rollback(txn.id)
            raise


def get(store: Store, *keys: ndb.Key) -> list[Any]:
    """Read records by key outside any transaction (strongly consistent)."""
    return _lookup_records(store, keys, None)


def get_async(store: Store, *keys: ndb.Key) -> Callable[[], list[Any]]:
    """Start reading records by key (as :func:`get`); returns a function that waits for them."""
    pbs = [key_pb(k) for k in keys]
    found = store.lookup_async(pbs)
    return lambda: _records(pbs, found())


def _lookup_records(store: Store, keys: Sequence[ndb.Key], transaction: bytes | None) -> list[Any]:
    pbs = [key_pb(k) for k in keys]
    return _records(pbs, store.lookup(pbs, transaction=transaction))


def _records(pbs: Sequence[Any], found: dict[bytes, Any]) -> list[Any]:
    records = []
    for pb in pbs:
        entity = found.get(key_bytes(pb))
        records.append(None if entity is None else ndb_model._entity_from_protobuf(entity))
    return records


def put_records(store: Store, records: Sequence[ndb.Model]) -> None:
    """Write records without a transaction, in bounded commits."""
    store.write([ndb_model._entity_to_protobuf(r)._pb for r in records], [])
