"""Keys: Datastore's key order and the shard split points taken from it."""

from __future__ import annotations

from mapper.datastore.keys import key_bytes, key_order
from mapper.engine.splitting import pick_split_points, split_ranges
from tests.support.fixtures_alltypes import key


def make_key(*path):
    return key("", "", *path)


def test_key_order_puts_ids_before_names_and_parents_before_children():
    keys = [make_key("A", "b"), make_key("A", 10, "B", 1), make_key("A", 2), make_key("A", 10)]
    ordered = sorted(keys, key=key_order)
    assert ordered == [keys[2], keys[3], keys[1], keys[0]]


def test_split_points_are_distinct_and_evenly_spaced():
    samples = [make_key("A", i) for i in range(1, 101)] * 2
    points = pick_split_points(samples, 4)
    assert [p.path[0].id for p in points] == [26, 51, 76]
    assert pick_split_points([make_key("A", 1)], 4) == []


def test_one_split_key_given_by_the_mapper_makes_two_ranges():
    """Finding 12: ``import --shards 2`` got one split key, and ran on one shard."""
    ranges, how = split_ranges(None, "A", "", 2, [make_key("A", 7)])  # type: ignore[arg-type]
    assert len(ranges) == 2 and ranges[0][1] == ranges[1][0] == key_bytes(make_key("A", 7))
    ranges, _ = split_ranges(None, "A", "", 3, [make_key("A", i) for i in (9, 3, 3)])
    assert [r[1] for r in ranges[:-1]] == [key_bytes(make_key("A", i)) for i in (3, 9)]
    ranges, _ = split_ranges(None, "A", "", 2, [make_key("A", i) for i in range(1, 10)])
    assert len(ranges) == 2
