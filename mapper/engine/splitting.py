"""Shard ranges: split points from an oversampled ``__scatter__`` query."""

from __future__ import annotations

from typing import Any

from google.cloud.datastore_v1.types import query as _query_types

from mapper.datastore.keys import key_bytes, key_order
from mapper.datastore.query import results
from mapper.datastore.rpc import Query, Store

PropertyOrder = _query_types.PropertyOrder.pb()

#: Scatter samples per shard: more samples, more even ranges (appengine-mapreduce uses 32).
OVERSAMPLE = 32

Range = tuple[bytes | None, bytes | None]


def split_ranges(
    store: Store, kind: str, namespace: str, shards: int, given: list[Any] | None = None
) -> tuple[list[Range], str]:
    """Up to ``shards`` disjoint key ranges covering ``kind``, and how they were made.

    ``given`` split keys (a mapper that knows its keys) replace the scatter sample.
    """
    if shards <= 1:
        return [(None, None)], "single range (1 shard requested)"
    if given:
        # Fewer keys than ranges wanted: every key is a split point (one key, two shards).
        unique = distinct_sorted(given)
        points = unique if len(unique) < shards else pick_split_points(unique, shards)
        bounds: list[bytes | None] = [None, *[key_bytes(p) for p in points], None]
        ranges = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
        return ranges, f"split keys given by the mapper -> {len(ranges)} ranges"
    samples = scatter_sample(store, kind, namespace, shards * OVERSAMPLE)
    points = pick_split_points(samples, shards)
    if not points:
        return [(None, None)], (
            f"single range: __scatter__ returned {len(samples)} sample keys "
            "(empty kind, or a store without __scatter__ such as the Firestore emulator)"
        )
    bounds = [None, *[key_bytes(p) for p in points], None]
    ranges = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
    return ranges, f"__scatter__: {len(samples)} samples -> {len(ranges)} ranges"


def scatter_sample(store: Store, kind: str, namespace: str, limit: int) -> list[Any]:
    query = Query(limit={"value": limit})
    query.kind.add(name=kind)
    query.projection.add().property.name = "__key__"
    order = query.order.add(direction=PropertyOrder.ASCENDING)
    order.property.name = "__scatter__"
    # The one pager: an empty page that says NOT_FINISHED is not the end of the sample.
    return [entity.key for entity in results(store, query, namespace)][:limit]


def pick_split_points(samples: list[Any], shards: int) -> list[Any]:
    """``shards - 1`` evenly spaced, distinct keys from the sorted sample."""
    unique = distinct_sorted(samples)
    if len(unique) < 2:
        return []
    count = min(shards, len(unique) + 1)
    step = len(unique) / count
    points = [unique[int(step * i)] for i in range(1, count)]
    return [p for i, p in enumerate(points) if i == 0 or key_order(points[i - 1]) != key_order(p)]


def distinct_sorted(keys: list[Any]) -> list[Any]:
    """``keys`` in key order, each once."""
    unique: list[Any] = []
    for key in sorted(keys, key=key_order):
        if not unique or key_order(unique[-1]) != key_order(key):
            unique.append(key)
    return unique
