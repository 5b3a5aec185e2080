"""Store: raw Datastore v1 RPCs (query pages, lookups, commits) on plain protobufs.

ndb's per-entity tasklet machinery is the main cost of a batch job, so the hot
path talks gRPC directly with raw (upb) protobuf messages and converts to ndb
models only where user code needs them.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import grpc
from google.api_core import exceptions as core_exceptions
from google.cloud.datastore_v1.types import datastore as _datastore_types
from google.cloud.datastore_v1.types import entity as _entity_types
from google.cloud.datastore_v1.types import query as _query_types

from mapper.datastore.cache import CacheCoherence
from mapper.datastore.keys import key_bytes, key_repr
from mapper.errors import PermanentSliceError
from mapper.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")

Entity = _entity_types.Entity.pb()
Key = _entity_types.Key.pb()
Value = _entity_types.Value.pb()
PartitionId = _entity_types.PartitionId.pb()
Query = _query_types.Query.pb()
Filter = _query_types.Filter.pb()
PropertyFilter = _query_types.PropertyFilter.pb()
CompositeFilter = _query_types.CompositeFilter.pb()
Mutation = _datastore_types.Mutation.pb()
RunQueryRequest = _datastore_types.RunQueryRequest.pb()
RunQueryResponse = _datastore_types.RunQueryResponse.pb()
LookupRequest = _datastore_types.LookupRequest.pb()
LookupResponse = _datastore_types.LookupResponse.pb()
CommitRequest = _datastore_types.CommitRequest.pb()
CommitResponse = _datastore_types.CommitResponse.pb()
BeginTransactionRequest = _datastore_types.BeginTransactionRequest.pb()
BeginTransactionResponse = _datastore_types.BeginTransactionResponse.pb()
RollbackRequest = _datastore_types.RollbackRequest.pb()
RollbackResponse = _datastore_types.RollbackResponse.pb()
AllocateIdsRequest = _datastore_types.AllocateIdsRequest.pb()
ReserveIdsRequest = _datastore_types.ReserveIdsRequest.pb()
RunAggregationQueryRequest = _datastore_types.RunAggregationQueryRequest.pb()
RunAggregationQueryResponse = _datastore_types.RunAggregationQueryResponse.pb()
AllocateIdsResponse = _datastore_types.AllocateIdsResponse.pb()
ReserveIdsResponse = _datastore_types.ReserveIdsResponse.pb()

#: Largest entity Datastore accepts (1 MiB minus 4 bytes).
MAX_ENTITY_BYTES = 1_048_572
#: Commit size bounds: Datastore allows 500 mutations and ~10 MiB per request.
MAX_MUTATIONS = 500
MAX_COMMIT_BYTES = 8 * 1024 * 1024
#: Both emulators refuse gRPC messages over 4 MiB (measured: 4,194,304 bytes).
EMULATOR_MAX_COMMIT_BYTES = 3 * 1024 * 1024 + 512 * 1024
#: Keys per lookup request.
MAX_LOOKUP_KEYS = 1000

TRANSIENT = (
    core_exceptions.ServiceUnavailable,
    core_exceptions.DeadlineExceeded,
    core_exceptions.InternalServerError,
    core_exceptions.TooManyRequests,
    core_exceptions.Aborted,
)
PERMANENT = (
    core_exceptions.InvalidArgument,
    core_exceptions.PermissionDenied,
    core_exceptions.NotFound,
    core_exceptions.FailedPrecondition,
)

#: Told the outcome of every attempt of an RPC: None when it answered, else its error.
Observer = Callable[[BaseException | None], None]
#: Sends one request and returns its response (raises grpc.RpcError as the channel does).
Send = Callable[[Any], Any]
#: Wraps every RPC: called with the RPC's name, its request and ``send``; returns the
#: response. The fault layer (``mapper.testing.faults``) is one: it can raise before or
#: after ``send``, answer without sending, or wait.
RpcInterceptor = Callable[[str, Any, Send], Any]


class Store:
    """Datastore RPCs for one project/database, over one gRPC channel."""

    def __init__(
        self,
        settings: Settings,
        channel: grpc.Channel,
        intercept: RpcInterceptor | None = None,
        coherence: CacheCoherence | None = None,
    ):
        self.project = settings.project
        self.database = settings.database
        self.intercept = intercept
        #: The app's ndb global cache, kept coherent around every commit (or None).
        self.coherence = coherence
        self._counts: collections.Counter[str] = collections.Counter()
        self._counts_lock = threading.Lock()
        #: Retries of a transient error per RPC (outside transactions): 8, backing off
        #: to 2 s, ride out about 10 s of UNAVAILABLE before the caller sees it.
        self.retries = 8
        self.max_commit_bytes = (
            EMULATOR_MAX_COMMIT_BYTES if settings.emulator_host else MAX_COMMIT_BYTES
        )
        params = f"project_id={self.project}"
        if self.database:
            params += f"&database_id={self.database}"
        self._metadata = (("x-goog-request-params", params),)
        self._calls = {
            name: channel.unary_unary(
                f"/google.datastore.v1.Datastore/{name}",
                request_serializer=req.SerializeToString,
                response_deserializer=resp.FromString,
            )
            for name, req, resp in (
                ("RunQuery", RunQueryRequest, RunQueryResponse),
                ("Lookup", LookupRequest, LookupResponse),
                ("Commit", CommitRequest, CommitResponse),
                ("BeginTransaction", BeginTransactionRequest, BeginTransactionResponse),
                ("Rollback", RollbackRequest, RollbackResponse),
                ("AllocateIds", AllocateIdsRequest, AllocateIdsResponse),
                ("ReserveIds", ReserveIdsRequest, ReserveIdsResponse),
                ("RunAggregationQuery", RunAggregationQueryRequest, RunAggregationQueryResponse),
            )
        }

    # -- requests -------------------------------------------------------------

    def partition(self, namespace: str) -> Any:
        return PartitionId(
            project_id=self.project, database_id=self.database, namespace_id=namespace
        )

    def run_query(self, query: Any, namespace: str, transaction: bytes | None = None) -> Any:
        """Run one page of ``query``; returns the raw QueryResultBatch."""
        request = RunQueryRequest(
            project_id=self.project,
            database_id=self.database,
            partition_id=self.partition(namespace),
            query=query,
        )
        if transaction:
            request.read_options.transaction = transaction
        return self._call("RunQuery", request, retry=transaction is None).batch

    def run_query_async(self, query: Any, namespace: str) -> Callable[[], Any]:
        """Start one page of ``query``; returns a function that waits for its batch.

        The request is built now, so the caller may change ``query`` at once (a
        pager sets the next cursor on it).
        """
        request = RunQueryRequest(
            project_id=self.project,
            database_id=self.database,
            partition_id=self.partition(namespace),
            query=query,
        )
        return self._started(
            "RunQuery",
            request,
            lambda response: response.batch,
            lambda: self.run_query(query, namespace),
        )

    def lookup_async(self, keys: Sequence[Any]) -> Callable[[], dict[bytes, Any]]:
        """Start a lookup of ``keys`` (at most MAX_LOOKUP_KEYS, outside any transaction);
        returns a function that waits for {serialized key: entity}, as :meth:`lookup`."""
        if len(keys) > MAX_LOOKUP_KEYS:
            raise ValueError(f"lookup_async takes at most {MAX_LOOKUP_KEYS} keys")
        request = LookupRequest(project_id=self.project, database_id=self.database, keys=keys)

        def found(response: Any) -> dict[bytes, Any]:
            if response.deferred:  # the rest, read now (Datastore defers under load)
                return {**self.lookup(list(response.deferred)), **_entities(response)}
            return _entities(response)

        return self._started("Lookup", request, found, lambda: self.lookup(keys))

    def begin_transaction_async(self) -> Callable[[], bytes]:
        """Start a transaction now; returns a function that waits for its id."""
        request = BeginTransactionRequest(project_id=self.project, database_id=self.database)
        return self._started(
            "BeginTransaction",
            request,
            lambda response: response.transaction,
            self.begin_transaction,
        )

    def _started(
        self, name: str, request: Any, answer: Callable[[Any], T], again: Callable[[], T]
    ) -> Callable[[], T]:
        """RPC ``name`` sent now; returns a function that waits for ``answer(response)``.

        The interceptor (the fault layer) sees the RPC when its answer is waited for;
        a transient error is met by ``again()``, the blocking call with its retries.
        The function has ``cancel`` (for an answer no longer wanted).
        """
        future = self._calls[name].future(request, metadata=self._metadata)

        def send(sent: Any) -> Any:
            # The request already under way is answered by its future; any other (an
            # interceptor's own) goes out now.
            if sent is request:
                return future.result()
            return self._calls[name](sent, metadata=self._metadata)

        def result() -> T:
            try:
                return answer(self._send(name, request, send))
            except (grpc.RpcError, core_exceptions.GoogleAPICallError) as e:
                error = core_exceptions.from_grpc_error(e) if isinstance(e, grpc.RpcError) else e
                if isinstance(error, TRANSIENT):
                    return again()
                if error is e:
                    raise
                raise error from e

        result.cancel = future.cancel  # type: ignore[attr-defined]
        return result

    def count(self, kind: str, filters: Sequence[Any], namespace: str) -> int:
        """COUNT(*) of ``kind`` matching ``filters`` (an aggregation query)."""
        request = RunAggregationQueryRequest(
            project_id=self.project,
            database_id=self.database,
            partition_id=self.partition(namespace),
        )
        query = request.aggregation_query.nested_query
        query.kind.add(name=kind)
        if len(filters) == 1:
            query.filter.CopyFrom(filters[0])
        elif filters:
            query.filter.composite_filter.op = CompositeFilter.AND
            query.filter.composite_filter.filters.extend(filters)
        request.aggregation_query.aggregations.add(alias="n").count.SetInParent()
        batch = self._call("RunAggregationQuery", request).batch
        return int(batch.aggregation_results[0].aggregate_properties["n"].integer_value)

    def lookup(self, keys: Sequence[Any], transaction: bytes | None = None) -> dict[bytes, Any]:
        """Fetch ``keys``; returns {serialized key: entity} for those that exist."""
        found = self.lookup_results(keys, transaction)
        return {k: result.entity for k, result in found.items()}

    def lookup_results(
        self, keys: Sequence[Any], transaction: bytes | None = None
    ) -> dict[bytes, Any]:
        """Fetch ``keys``; returns {serialized key: EntityResult (entity and version)}."""
        found: dict[bytes, Any] = {}
        for start in range(0, len(keys), MAX_LOOKUP_KEYS):
            pending = list(keys[start : start + MAX_LOOKUP_KEYS])
            while pending:
                request = LookupRequest(
                    project_id=self.project, database_id=self.database, keys=pending
                )
                if transaction:
                    request.read_options.transaction = transaction
                response = self._call("Lookup", request, retry=transaction is None)
                for result in response.found:
                    found[key_bytes(result.entity.key)] = result
                pending = list(response.deferred)
        return found

    def commit(
        self,
        upserts: Sequence[Any] = (),
        deletes: Sequence[Any] = (),
        transaction: bytes | None = None,
        versions: Mapping[bytes, int] | None = None,
        observe: Observer | None = None,
    ) -> Any:
        """Write ``upserts`` and ``deletes`` in one commit (no splitting here).

        ``versions`` (serialized key -> the version read) makes each mutation of a
        listed key conflict-checked: Datastore applies it only if the entity is still
        at that version, and reports ``conflict_detected`` otherwise.
        """
        request = CommitRequest(project_id=self.project, database_id=self.database)
        if transaction:
            request.transaction = transaction
            request.mode = CommitRequest.TRANSACTIONAL
        else:
            request.mode = CommitRequest.NON_TRANSACTIONAL
        mutations = request.mutations
        for entity in upserts:
            mutation = mutations.add()
            mutation.upsert.CopyFrom(entity)
            _check_version(mutation, entity.key, versions)
        for key in deletes:
            mutation = mutations.add()
            mutation.delete.CopyFrom(key)
            _check_version(mutation, key, versions)
        # A non-transactional upsert/delete batch is idempotent: safe to retry.
        keys = [e.key for e in upserts] + list(deletes)
        return self._commit(request, keys, retry=transaction is None, observe=observe)

    def _commit(
        self, request: Any, keys: list[Any], retry: bool, observe: Observer | None = None
    ) -> Any:
        if self.coherence is None:
            return self._call("Commit", request, retry=retry, observe=observe)
        # As ndb does: a failed commit leaves its locks to expire, so no reader
        # caches a value the commit may or may not have replaced.
        locks = self.coherence.lock(keys)
        response = self._call("Commit", request, retry=retry, observe=observe)
        self.coherence.unlock(locks)
        return response

    def write(
        self,
        upserts: Sequence[Any],
        deletes: Sequence[Any],
        versions: Mapping[bytes, int] | None = None,
        observe: Observer | None = None,
    ) -> list[bytes]:
        """Write everything in as many bounded commits as it takes.

        Returns the serialized keys whose conflict-checked mutation (see
        :meth:`commit`) was not applied: the entity changed since it was read.
        ``observe`` is told the outcome of every commit attempt (the throttle's back-off).
        """
        conflicts: list[bytes] = []
        for chunk_puts, chunk_deletes in bounded_batches(upserts, deletes, self.max_commit_bytes):
            response = self.commit(chunk_puts, chunk_deletes, versions=versions, observe=observe)
            if versions:
                keys = [e.key for e in chunk_puts] + list(chunk_deletes)
                conflicts += [
                    key_bytes(key)
                    for key, result in zip(keys, response.mutation_results, strict=True)
                    if result.conflict_detected
                ]
        return conflicts

    def insert(self, entities: Sequence[Any]) -> bool:
        """Write ``entities`` only where no entity has their keys, in one commit without a
        transaction: True if every one was inserted, False if one existed already.

        Each insert is atomic on its own, the commit is not: after False, the others
        may or may not have been written (both emulators apply them, measured). A retry
        after a lost answer finds its own inserts and answers False.
        """
        request = CommitRequest(
            project_id=self.project,
            database_id=self.database,
            mode=CommitRequest.NON_TRANSACTIONAL,
        )
        for entity in entities:
            request.mutations.add().insert.CopyFrom(entity)
        try:
            self._commit(request, [e.key for e in entities], retry=True)
        except core_exceptions.AlreadyExists:
            return False
        return True

    def begin_transaction(self) -> bytes:
        request = BeginTransactionRequest(project_id=self.project, database_id=self.database)
        return self._call("BeginTransaction", request).transaction

    def rollback(self, transaction: bytes) -> None:
        request = RollbackRequest(
            project_id=self.project, database_id=self.database, transaction=transaction
        )
        try:
            # Retried: a rollback lost to an outage leaves the transaction's locks held
            # until they expire, and every transaction on those entities aborts meanwhile.
            self._call("Rollback", request)
        except core_exceptions.GoogleAPICallError:
            logger.warning("rollback failed; the transaction will expire on its own")

    def allocate_ids(self, keys: Sequence[Any]) -> list[Any]:
        request = AllocateIdsRequest(
            project_id=self.project, database_id=self.database, keys=list(keys)
        )
        return list(self._call("AllocateIds", request).keys)

    def reserve_ids(self, keys: Sequence[Any]) -> None:
        """Keep the allocator from ever handing out these keys' ids (idempotent)."""
        if keys:
            request = ReserveIdsRequest(
                project_id=self.project, database_id=self.database, keys=list(keys)
            )
            self._call("ReserveIds", request)

    # -- plumbing -------------------------------------------------------------

    def rpc_counts(self) -> dict[str, int]:
        """RPCs sent so far, by method (``RunQuery``, ``Commit``, ...), retries included."""
        with self._counts_lock:
            return dict(self._counts)

    def _send(self, name: str, request: Any, send: Send | None = None) -> Any:
        """One attempt of RPC ``name``, through the interceptor when there is one."""
        with self._counts_lock:
            self._counts[name] += 1
        if send is None:
            call = self._calls[name]

            def send(sent: Any) -> Any:
                return call(sent, metadata=self._metadata)

        if self.intercept is None:
            return send(request)
        return self.intercept(name, request, send)

    def _call(
        self, name: str, request: Any, retry: bool = True, observe: Observer | None = None
    ) -> Any:
        attempt = 0
        while True:
            try:
                response = self._send(name, request)
                if observe is not None:
                    observe(None)
                return response
            except (grpc.RpcError, core_exceptions.GoogleAPICallError) as e:
                error = core_exceptions.from_grpc_error(e) if isinstance(e, grpc.RpcError) else e
                if observe is not None:
                    observe(error)
                attempt += 1
                if not retry or not isinstance(error, TRANSIENT) or attempt > self.retries:
                    if error is e:
                        raise
                    raise error from e
                delay = min(2.0, 0.05 * 2**attempt) * (0.5 + random.random())
                logger.info("%s failed with %s; retry %d in %.2fs", name, error, attempt, delay)
                time.sleep(delay)


def bounded_batches(
    upserts: Sequence[Any], deletes: Sequence[Any], max_bytes: int = MAX_COMMIT_BYTES
) -> Iterable[tuple[list[Any], list[Any]]]:
    """Split mutations into commits of <= MAX_MUTATIONS and <= ``max_bytes``.

    Raises PermanentSliceError for an entity over Datastore's 1 MiB limit: no
    retry could write it.
    """
    puts: list[Any] = []
    dels: list[Any] = []
    size = 0
    for entity in upserts:
        entity_size = entity.ByteSize()
        if entity_size > MAX_ENTITY_BYTES:
            raise PermanentSliceError(
                f"entity is {entity_size} bytes, over Datastore's {MAX_ENTITY_BYTES}",
                key=key_repr(entity.key),
            )
        if puts and (len(puts) >= MAX_MUTATIONS or size + entity_size > max_bytes):
            yield puts, []
            puts, size = [], 0
        puts.append(entity)
        size += entity_size
    for key in deletes:
        if len(puts) + len(dels) >= MAX_MUTATIONS:
            yield puts, dels
            puts, dels, size = [], [], 0
        dels.append(key)
    if puts or dels:
        yield puts, dels


def is_permanent(error: BaseException) -> bool:
    """True for errors no retry of the slice can fix."""
    return isinstance(error, (PermanentSliceError, *PERMANENT))


def _entities(response: Any) -> dict[bytes, Any]:
    """The entities a LookupResponse found, by serialized key."""
    return {key_bytes(result.entity.key): result.entity for result in response.found}


def _check_version(mutation: Any, key: Any, versions: Mapping[bytes, int] | None) -> None:
    if versions:
        version = versions.get(key_bytes(key))
        if version:
            mutation.base_version = version
