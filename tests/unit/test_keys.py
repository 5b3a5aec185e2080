"""Keys: Datastore's key order and the shard split points taken from it."""

from __future__ import annotations

from mapper.datastore.keys import key_order
from mapper.engine.splitting import pick_split_points
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
