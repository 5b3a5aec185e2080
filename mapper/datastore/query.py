"""Queries: one filter builder, the shard query (key-ordered range) and one pager."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from google.cloud import ndb
from google.cloud.datastore_v1.types import query as _query_types
from google.cloud.ndb import query as ndb_query

from mapper.datastore.rpc import CompositeFilter, Filter, PropertyFilter, Query
from mapper.errors import InvalidJobError

if TYPE_CHECKING:
    from mapper.datastore.rpc import Store

PropertyOrder = _query_types.PropertyOrder.pb()
MoreResults = _query_types.QueryResultBatch.MoreResultsType
EntityResult = _query_types.EntityResult.pb()
KEY_PROPERTY = "__key__"
#: The pseudo-property of an ancestor filter (``key HAS_ANCESTOR k``).
PARENT = "__parent__"

# -- filters ------------------------------------------------------------------------


def key_filter(op: int, key: Any, name: str = KEY_PROPERTY) -> Any:
    """``name op key`` as a Filter protobuf (``__key__ > k``, ``author = k``, ...)."""
    result = Filter()
    result.property_filter.property.name = name
    result.property_filter.op = op
    result.property_filter.value.key_value.CopyFrom(key)
    return result


def value_filter(name: str, value: Any) -> Any:
    """``name = value`` for a raw Value protobuf (its index and meaning flags dropped)."""
    result = Filter()
    result.property_filter.property.name = name
    result.property_filter.op = PropertyFilter.EQUAL
    result.property_filter.value.CopyFrom(value)
    result.property_filter.value.ClearField("exclude_from_indexes")
    result.property_filter.value.ClearField("meaning")
    return result


def equal_filter(name: str, value: Any) -> Any:
    """``name = value`` for a plain Python value (str, int, bool, ...)."""
    return filters_from([(name, value)])[0]


def filters_from(items: Sequence[Any]) -> list[Any]:
    """Filter protobufs from a FILTERS list.

    Items are ``(property, value)`` pairs (an ndb Property or a name), ndb
    filter nodes (``Model.prop == value``) or Filter protobufs, kept as given.
    Only equality (and ``__key__`` ancestor) filters, joined by AND, are taken:
    a shard reads its key range ordered by key, which Datastore refuses with an
    inequality, ``!=`` or ``IN`` on another property (raises InvalidJobError).
    """
    result = []
    for item in items:
        if isinstance(item, Filter):
            result.append(_equality_only(item, item))
            continue
        if isinstance(item, list) and len(item) == 2:
            item = tuple(item)  # pairs that went through JSON
        if isinstance(item, ndb_query.Node):
            node = item
        elif isinstance(item, tuple) and len(item) == 2:
            prop, value = item
            if isinstance(prop, ndb.Property):
                node = prop == value
            elif isinstance(prop, str):
                node = ndb_query.FilterNode(prop, "=", value)
            else:
                raise InvalidJobError(f"filter property must be a Property or name: {prop!r}")
        else:
            raise InvalidJobError(f"FILTERS items are (property, value) pairs: {item!r}")
        if not isinstance(node, ndb_query.FilterNode):  # IN and OR become disjunctions
            raise InvalidJobError(_EQUALITY_ONLY + repr(item))
        message = node._to_filter()
        pb = _as_filter(getattr(message, "_pb", message))  # upb inside proto-plus
        result.append(_equality_only(pb, item))
    return result


_EQUALITY_ONLY = (
    "FILTERS take equality filters only (a shard's query is ordered by key, which "
    "Datastore refuses with an inequality, != or IN on another property), got "
)


def _equality_only(pb: Any, item: Any) -> Any:
    """``pb`` if it is equalities (or a key ancestor) joined by AND, else InvalidJobError."""
    if pb.WhichOneof("filter_type") == "composite_filter":
        if pb.composite_filter.op != CompositeFilter.AND:
            raise InvalidJobError(_EQUALITY_ONLY + repr(item))
        for part in pb.composite_filter.filters:
            _equality_only(part, item)
    elif pb.property_filter.op not in (PropertyFilter.EQUAL, PropertyFilter.HAS_ANCESTOR):
        raise InvalidJobError(_EQUALITY_ONLY + repr(item))
    return pb


def and_filter(query: Any, parts: Sequence[Any]) -> None:
    """Set ``query.filter`` to the conjunction of ``parts`` (nothing for none)."""
    if len(parts) == 1:
        query.filter.CopyFrom(parts[0])
    elif parts:
        query.filter.composite_filter.op = CompositeFilter.AND
        query.filter.composite_filter.filters.extend(parts)


def _as_filter(message: Any) -> Any:
    """Wrap a PropertyFilter or CompositeFilter in a Filter."""
    if isinstance(message, Filter):
        return message
    if isinstance(message, CompositeFilter):
        return Filter(composite_filter=message)
    return Filter(property_filter=message)


# -- the shard query -----------------------------------------------------------------


def kind_query(kind: str, filters: Sequence[Any] = (), keys_only: bool = False) -> Any:
    """All ``kind`` entities matching ``filters``, ordered by key."""
    query = Query()
    query.kind.add(name=kind)
    order = query.order.add(direction=PropertyOrder.ASCENDING)
    order.property.name = KEY_PROPERTY
    if keys_only:
        query.projection.add().property.name = KEY_PROPERTY
    and_filter(query, list(filters))
    return query


def range_filters(
    filters: Sequence[Any], start: Any | None, end: Any | None, after: Any | None
) -> list[Any]:
    """``filters`` and the key range ``start <= key < end``, ``key > after`` (None: open)."""
    parts = list(filters)
    if after is not None:
        parts.append(key_filter(PropertyFilter.GREATER_THAN, after))
    elif start is not None:
        parts.append(key_filter(PropertyFilter.GREATER_THAN_OR_EQUAL, start))
    if end is not None:
        parts.append(key_filter(PropertyFilter.LESS_THAN, end))
    return parts


def shard_query(
    kind: str,
    filters: Sequence[Any],
    start: Any | None,
    end: Any | None,
    after: Any | None,
    limit: int | None,
    keys_only: bool = False,
) -> Any:
    """The query for a shard's range: ``start <= key < end``, ``key > after``."""
    query = kind_query(kind, range_filters(filters, start, end, after), keys_only)
    if limit is not None:
        query.limit.value = limit
    return query


# -- the pager -----------------------------------------------------------------------

#: The most entities a stream asks for in one request. Production Datastore and the
#: Datastore emulator (300) cut pages smaller themselves; the Firestore emulator answers
#: whatever the limit allows, so this bounds a stream's memory there, and the number of
#: queries, each of which costs it time in proportion to the kind (docs/performance.md).
STREAM_PAGE = 20_000


def pages(
    store: Store,
    query: Any,
    namespace: str,
    transaction: bytes | None = None,
    *,
    page_size: int | None = None,
    prefetch: bool = False,
) -> Iterator[Any]:
    """Every result page of ``query``, continued by cursor.

    A limit on ``query`` is a limit on the whole walk. ``page_size`` (for a
    query without one) asks for at most that many results a request, and
    continues after every full page. Only a page that says NO_MORE_RESULTS, or
    one that says MORE_RESULTS_AFTER_LIMIT without filling what was asked (the
    Datastore emulator ends every walk so), ends it: production can answer an
    empty page that says NOT_FINISHED, and the next page goes on.

    With ``prefetch`` (and no transaction) the first page is requested at once
    and each next page before this one is yielded, so it arrives while the caller
    works.
    """
    query = type(query).FromString(query.SerializeToString())
    remaining = query.limit.value if query.HasField("limit") else None
    if remaining is None and page_size is not None:
        query.limit.value = page_size
    asynchronous = prefetch and transaction is None
    first = _request(store, query, namespace, transaction, asynchronous)
    walk = _walk_pages(store, query, namespace, transaction, remaining, first, asynchronous)
    return _Walk(walk, first)


class _Walk:
    """A walk over pages whose ``close`` also cancels a request still under way (the
    first, sent before the walk starts, or the next, prefetched)."""

    def __init__(self, walk: Iterator[Any], first: Callable[[], Any]):
        self._walk: Iterator[Any] = walk
        self._first: Callable[[], Any] | None = first

    def __iter__(self) -> _Walk:
        return self

    def __next__(self) -> Any:
        page = next(self._walk)
        # The first request is answered: let go of it, and with it of the first page
        # (held here, a 20,000-entity page stayed in memory for the whole walk).
        self._first = None
        return page

    def close(self) -> None:
        if self._first is not None:
            _cancel(self._first)
        self._walk.close()  # type: ignore[attr-defined]


def _cancel(fetch: Callable[[], Any]) -> None:
    cancel = getattr(fetch, "cancel", None)
    if cancel is not None:
        cancel()  # a request already answered is not affected


def _walk_pages(
    store: Store,
    query: Any,
    namespace: str,
    transaction: bytes | None,
    remaining: int | None,
    fetch: Callable[[], Any],
    asynchronous: bool,
) -> Iterator[Any]:
    while True:
        asked = query.limit.value if query.HasField("limit") else None
        batch = fetch()
        got = len(batch.entity_results)
        if remaining is not None:
            remaining -= got
        last = not _more_after(batch, got, asked) or (remaining is not None and remaining <= 0)
        if not last:
            query.start_cursor = batch.end_cursor
            if remaining is not None:
                query.limit.value = remaining
            fetch = _request(store, query, namespace, transaction, asynchronous)
        # Hand the page over without keeping it: while this generator waits, the
        # caller may drop it (a large page parsed is large).
        page, batch = [batch], None
        try:
            yield page.pop()
        except GeneratorExit:  # closed early: the next page is not wanted
            _cancel(fetch)
            raise
        if last:
            return


def results(
    store: Store,
    query: Any,
    namespace: str,
    transaction: bytes | None = None,
    *,
    page_size: int | None = None,
    prefetch: bool = False,
) -> Iterator[Any]:
    """The entities of every page of ``query`` (keys only: entities with just a key)."""
    walk = pages(store, query, namespace, transaction, page_size=page_size, prefetch=prefetch)
    for batch in walk:
        for result in batch.entity_results:
            yield result.entity


def stream(store: Store, query: Any, namespace: str, page: int = STREAM_PAGE) -> EntityStream:
    """``query`` read as one stream: large pages (``page`` at most), each prefetched,
    batches cut here."""
    return EntityStream(pages(store, query, namespace, page_size=page, prefetch=True))


class EntityStream:
    """The entities of a walk over pages, taken in batches of any size.

    Batches do not follow page boundaries: a batch may span pages, a page may
    hold many batches. :meth:`exhausted` looks ahead (waiting for the next page
    only when nothing is buffered), so the last batch knows it is the last.

    Buffered entities are kept serialized: a parsed page costs about five times
    its wire size, and with a prefetched page arriving beside it a large page
    (the Firestore emulator's) would otherwise be held parsed twice.
    """

    def __init__(self, walk: Iterator[Any]):
        self._walk = walk
        self._buffer: collections.deque[bytes] = collections.deque()
        self._buffered = 0  # bytes in ``_buffer``
        self._ended = False
        #: True when the last take stopped at its byte bound, not its count or the end.
        self.full = False
        #: The serialized size of the last take's results.
        self.taken_bytes = 0

    def take(self, size: int) -> list[Any]:
        """The next ``size`` entities (fewer only at the end of the walk)."""
        return [result.entity for result in self.take_results(size)]

    def take_results(
        self, size: int, max_bytes: int | None = None, at_least_one: bool = True
    ) -> list[Any]:
        """The next ``size`` EntityResults: each entity with the version it was read at.

        ``max_bytes``: fewer, once the next would take the batch's serialized size past
        it (one at least, unless not ``at_least_one``); ``full`` then says so.
        """
        while len(self._buffer) < size and (max_bytes is None or self._buffered < max_bytes):
            if not self._pull():
                break
        taken: list[bytes] = []
        total = 0
        self.full = False
        while self._buffer and len(taken) < size:
            data = self._buffer[0]
            over = max_bytes is not None and total + len(data) > max_bytes
            if over and (taken or not at_least_one):
                self.full = True
                break
            taken.append(self._buffer.popleft())
            total += len(data)
        self._buffered -= total
        self.taken_bytes = total
        return [EntityResult.FromString(data) for data in taken]

    def exhausted(self) -> bool:
        """True when no entity follows the ones taken so far."""
        while not self._buffer and self._pull():
            pass
        return not self._buffer

    def put_back(self, entities: Sequence[Any]) -> None:
        """Return ``entities`` (the last ones taken) to the front of the stream."""
        data = [EntityResult(entity=e).SerializeToString() for e in reversed(entities)]
        self._buffer.extendleft(data)
        self._buffered += sum(len(d) for d in data)

    def close(self) -> None:
        """Stop the walk (a page still in flight is left to finish on its own)."""
        close = getattr(self._walk, "close", None)
        if close is not None:
            close()

    def _pull(self) -> bool:
        if self._ended:
            return False
        batch = next(self._walk, None)
        if batch is None:
            self._ended = True
            return False
        data = [result.SerializeToString() for result in batch.entity_results]
        self._buffer.extend(data)
        self._buffered += sum(len(d) for d in data)
        return True


def _more_after(batch: Any, got: int, asked: int | None) -> bool:
    """Whether a page follows ``batch``, which answered ``got`` of ``asked`` results."""
    if batch.more_results == MoreResults.NOT_FINISHED:
        return True
    filled = asked is not None and got >= asked
    return batch.more_results == MoreResults.MORE_RESULTS_AFTER_LIMIT and filled


def _request(
    store: Store, query: Any, namespace: str, transaction: bytes | None, asynchronous: bool
) -> Callable[[], Any]:
    """The next page of ``query`` as a function: started now if ``asynchronous``, else lazily."""
    if asynchronous:
        return store.run_query_async(query, namespace)
    request = type(query).FromString(query.SerializeToString())
    return lambda: store.run_query(request, namespace, transaction)
