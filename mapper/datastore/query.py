"""Queries: one filter builder, the shard query (key-ordered range) and one pager."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
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
    parts = list(filters)
    if after is not None:
        parts.append(key_filter(PropertyFilter.GREATER_THAN, after))
    elif start is not None:
        parts.append(key_filter(PropertyFilter.GREATER_THAN_OR_EQUAL, start))
    if end is not None:
        parts.append(key_filter(PropertyFilter.LESS_THAN, end))
    query = kind_query(kind, parts, keys_only)
    if limit is not None:
        query.limit.value = limit
    return query


# -- the pager -----------------------------------------------------------------------


def pages(
    store: Store, query: Any, namespace: str, transaction: bytes | None = None
) -> Iterator[Any]:
    """Every result page of ``query``, continued by cursor.

    Only NO_MORE_RESULTS (or a reached limit) ends the walk: production can
    answer an empty page that says NOT_FINISHED, and the next page goes on.
    """
    query = type(query).FromString(query.SerializeToString())
    remaining = query.limit.value if query.HasField("limit") else None
    while True:
        batch = store.run_query(query, namespace, transaction)
        yield batch
        got = len(batch.entity_results)
        if remaining is not None:
            remaining -= got
        if is_last_page(batch) or (remaining is not None and remaining <= 0):
            return
        query.start_cursor = batch.end_cursor
        if remaining is not None:
            query.limit.value = remaining


def results(
    store: Store, query: Any, namespace: str, transaction: bytes | None = None
) -> Iterator[Any]:
    """The entities of every page of ``query`` (keys only: entities with just a key)."""
    for batch in pages(store, query, namespace, transaction):
        for result in batch.entity_results:
            yield result.entity


def is_last_page(batch: Any) -> bool:
    """True when no page follows ``batch`` (NOT_FINISHED means one does, even if empty)."""
    return batch.more_results != MoreResults.NOT_FINISHED
