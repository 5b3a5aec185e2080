"""Shard queries: a kind, equality filters and a key range, always ordered by key."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from google.cloud.datastore_v1.types import query as _query_types

from mapper.datastore.rpc import CompositeFilter, Filter, PropertyFilter, Query

PropertyOrder = _query_types.PropertyOrder.pb()
KEY_PROPERTY = "__key__"


def shard_query(
    kind: str,
    filters: Sequence[Any],
    start: Any | None,
    end: Any | None,
    after: Any | None,
    limit: int,
    keys_only: bool = False,
) -> Any:
    """The query for one page of a shard: ``start <= key < end``, ``key > after``."""
    query = Query(limit={"value": limit})
    query.kind.add(name=kind)
    order = query.order.add(direction=PropertyOrder.ASCENDING)
    order.property.name = KEY_PROPERTY
    if keys_only:
        query.projection.add().property.name = KEY_PROPERTY
    parts = list(filters)
    if after is not None:
        parts.append(key_filter(PropertyFilter.GREATER_THAN, after))
    elif start is not None:
        parts.append(key_filter(PropertyFilter.GREATER_THAN_OR_EQUAL, start))
    if end is not None:
        parts.append(key_filter(PropertyFilter.LESS_THAN, end))
    if len(parts) == 1:
        query.filter.CopyFrom(parts[0])
    elif parts:
        query.filter.composite_filter.op = CompositeFilter.AND
        query.filter.composite_filter.filters.extend(parts)
    return query


def key_filter(op: int, key: Any) -> Any:
    result = Filter()
    result.property_filter.property.name = KEY_PROPERTY
    result.property_filter.op = op
    result.property_filter.value.key_value.CopyFrom(key)
    return result
