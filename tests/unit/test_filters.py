"""FILTERS: equality only, refused before anything is written when they are not."""

from __future__ import annotations

import pytest
from google.cloud import ndb

from mapper.datastore.query import filters_from, key_filter
from mapper.datastore.rpc import CompositeFilter, Filter, Key, PropertyFilter
from mapper.errors import InvalidJobError


class Thing(ndb.Model):
    n = ndb.IntegerProperty()


def test_equality_filters_become_filter_protobufs() -> None:
    pbs = filters_from([(Thing.n, 3), ("name", "x"), Thing.n == 4])
    assert [pb.property_filter.op for pb in pbs] == [PropertyFilter.EQUAL] * 3


@pytest.mark.parametrize(
    "item", [Thing.n > 3, Thing.n != 3, Thing.n.IN([1, 2])], ids=[">", "!=", "IN"]
)
def test_inequality_not_equal_and_in_filters_are_refused_naming_the_filter(item) -> None:
    with pytest.raises(InvalidJobError, match=r"FILTERS take equality filters only.*Thing|'n'"):
        filters_from([item])


def test_filter_protobufs_are_checked_too() -> None:
    ancestor = Key()
    ancestor.partition_id.project_id = "p"
    ancestor.path.add(kind="A", id=1)
    assert filters_from([key_filter(PropertyFilter.HAS_ANCESTOR, ancestor, "__key__")])
    either = Filter()
    either.composite_filter.op = CompositeFilter.OR
    either.composite_filter.filters.extend(filters_from([("a", 1), ("a", 2)]))
    with pytest.raises(InvalidJobError, match="equality"):
        filters_from([either])
    with pytest.raises(InvalidJobError, match="equality"):
        filters_from([key_filter(PropertyFilter.GREATER_THAN, ancestor)])
