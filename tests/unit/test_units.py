"""The work-unit planner and the stream that reads a shard's units one after another."""

from __future__ import annotations

import pytest
from google.cloud.datastore_v1.types import query as query_types

from mapper.datastore.keys import key_bytes, key_from_bytes, key_order
from mapper.datastore.query import EntityStream
from mapper.engine.units import (
    READ_AHEAD,
    READ_AHEAD_ENTITIES,
    Unit,
    UnitStream,
    check_selection,
    namespaces_done,
    plan,
)
from mapper.errors import InvalidJobError
from tests.support.fixtures_alltypes import key

Batch = query_types.QueryResultBatch.pb()


def keys_of(namespace: str, count: int) -> list:
    return [key("", namespace, "Item", i) for i in range(1, count + 1)]


def test_a_large_namespace_is_cut_and_the_shards_carry_even_work():
    sizes = {"big": 20_000, **{f"t{i:03d}": 1 + i % 40 for i in range(299)}}
    # Every 40th key of the large namespace, as the planner's key walk keeps them.
    samples = {"big": keys_of("big", 20_000)[::40]}
    dealt = plan(sizes, samples, 8)

    loads = [sum(u.size for u in units) for units in dealt]
    assert len(dealt) == 8 and sum(loads) == sum(sizes.values())
    assert max(loads) <= 1.5 * sum(loads) / 8  # half a share per piece at most
    pieces = [u for units in dealt for u in units if u.namespace == "big"]
    pieces.sort(key=lambda u: key_order(key_from_bytes(u.start)) if u.start else ())
    assert len(pieces) > 1 and pieces[0].start is None and pieces[-1].end is None
    assert all(a.end == b.start for a, b in zip(pieces, pieces[1:], strict=False))
    assert sum(u.size for u in pieces) == 20_000
    # Small namespaces stay whole, each in one shard.
    small = [u.namespace for units in dealt for u in units if u.namespace != "big"]
    assert sorted(small) == sorted(n for n in sizes if n != "big")


def test_fewer_units_than_shards_make_fewer_shards_and_no_work_one_empty_shard():
    assert [len(units) for units in plan({"a": 3, "b": 1}, {}, 8)] == [1, 1]
    assert plan({}, {}, 8) == [[]]


def test_units_round_trip_through_json():
    unit = Unit("ns", key_bytes(key("", "ns", "Item", 5)), None, 17)
    assert Unit.from_json(unit.to_json()) == unit


def test_a_namespace_is_done_when_all_its_pieces_are():
    a1, a2, b = Unit("a", None, b"m"), Unit("a", b"m", None), Unit("b")
    assert namespaces_done([([a1, b], 1, False), ([a2], 0, False)]) == (0, 2)
    assert namespaces_done([([a1, b], 1, False), ([a2], 0, True)]) == (1, 2)
    assert namespaces_done([([a1, b], 1, True), ([a2], 0, True)]) == (2, 2)


@pytest.mark.parametrize(
    ("all_namespaces", "prefix", "given", "namespace", "message"),
    [
        (True, "x", None, "", "use one of all_namespaces, namespace_prefix, not several"),
        (False, None, ["a"], "n", "namespace 'n' and namespaces exclude each other"),
        (False, None, "a,b", "", "namespaces must be a list of strings"),
    ],
)
def test_one_way_of_naming_namespaces_at_a_time(all_namespaces, prefix, given, namespace, message):
    with pytest.raises(InvalidJobError, match=message):
        check_selection(all_namespaces, prefix, given, namespace)


def pages_of(keys: list, page: int) -> list:
    pages = []
    for start in range(0, len(keys), page):
        batch = Batch()
        for k in keys[start : start + page]:
            batch.entity_results.add().entity.key.CopyFrom(k)
        pages.append(batch)
    return pages


def unit_stream(
    counts: list[int], unit: int = 0, after=None, opened=None, sizes=None
) -> UnitStream:
    """A stream over units of ``counts`` entities, each unit its own namespace."""

    def open_unit(index: int, start_after):
        if opened is not None:
            opened.append(index)
        keys = keys_of(f"n{index}", counts[index])
        if start_after is not None:
            keys = [k for k in keys if k.path[0].id > start_after.path[0].id]
        return EntityStream(iter(pages_of(keys, 3)))

    return UnitStream(open_unit, len(counts), unit, after, sizes=sizes)


def test_batches_run_across_units_and_the_position_is_the_last_taken():
    stream = unit_stream([2, 0, 0, 5, 1])
    first = stream.take(4)
    assert [(k.key.partition_id.namespace_id, k.key.path[0].id) for k in first] == [
        ("n0", 1), ("n0", 2), ("n3", 1), ("n3", 2)
    ]  # fmt: skip
    unit, last = stream.position
    assert unit == 3 and key_from_bytes(last).path[0].id == 2
    assert len(stream.take(3)) == 3 and stream.position[0] == 3
    assert not stream.exhausted()
    assert [e.key.partition_id.namespace_id for e in stream.take(9)] == ["n4"]
    assert stream.exhausted() and stream.position[0] == 4


def test_a_unit_read_through_moves_the_position_to_the_next_with_nothing_taken():
    stream = unit_stream([2, 0, 3])
    stream.take(2)
    assert not stream.exhausted()  # looks past the empty unit to the third
    assert stream.position == (2, None)


def test_a_stream_resumes_inside_its_checkpoint_unit_and_reads_ahead():
    opened: list[int] = []
    stream = unit_stream([4, 4, 4, 4, 4, 4, 4, 4, 4, 4], unit=1,
                         after=keys_of("n1", 4)[1], opened=opened)  # fmt: skip
    assert opened == list(range(1, 9))  # the next units' first pages are asked for at once
    taken = stream.take(3)
    assert [(e.key.partition_id.namespace_id, e.key.path[0].id) for e in taken] == [
        ("n1", 3), ("n1", 4), ("n2", 1)
    ]  # fmt: skip


def test_large_units_are_not_read_ahead_only_small_ones():
    """Read-ahead stops at READ_AHEAD_ENTITIES planned entities: eight pieces of one large
    namespace, each asked for as one page, held the whole namespace in memory."""
    opened: list[int] = []
    big = READ_AHEAD_ENTITIES // 2 + 1
    stream = unit_stream([3, 3, 3], opened=opened, sizes=[big, big, big])
    assert opened == [0, 1]  # the head, and one piece within the budget
    stream.take(2)
    assert opened == [0, 1]
    stream.take(2)  # unit 0 read through: unit 2 is the one ahead now
    assert opened == [0, 1, 2]
    small = unit_stream([1] * 12, opened=(few := []), sizes=[20] * 12)
    assert few == list(range(READ_AHEAD))  # as many as READ_AHEAD, the head among them
    assert len(small.take(12)) == 12 and small.exhausted()


def test_entities_put_back_are_taken_again_with_their_unit():
    stream = unit_stream([2, 3])
    batch = stream.take(4)
    stream.exhausted()
    stream.put_back(batch[1:])
    again = stream.take(2)
    assert again == batch[1:3] and stream.position == (1, key_bytes(batch[2].key))


def test_a_take_bounded_by_bytes_stops_before_the_entity_that_would_pass_the_bound():
    keys = keys_of("n", 10)
    size = EntityStream(iter(pages_of(keys[:1], 1))).take_results(1)[0].ByteSize()
    stream = EntityStream(iter(pages_of(keys, 3)))  # same-sized entities, pages of 3
    first = stream.take_results(10, max_bytes=4 * size + size // 2)
    assert [r.entity.key.path[0].id for r in first] == [1, 2, 3, 4]  # across pages
    assert stream.full
    assert len(stream.take_results(10, max_bytes=size // 2)) == 1  # one at least
    rest = stream.take_results(10, max_bytes=100 * size)
    assert [r.entity.key.path[0].id for r in rest] == [6, 7, 8, 9, 10]
    assert not stream.full and stream.exhausted()


def test_a_take_across_units_bounded_by_bytes_ends_inside_a_unit_that_goes_on():
    one = unit_stream([1]).take_results(1)[0].ByteSize()
    stream = unit_stream([2, 0, 5])
    first = stream.take_results(10, max_bytes=4 * one)
    assert [(r.entity.key.partition_id.namespace_id, r.entity.key.path[0].id) for r in first] == [
        ("n0", 1), ("n0", 2), ("n2", 1), ("n2", 2)
    ]  # fmt: skip
    assert stream.position[0] == 2
    assert [r.entity.key.path[0].id for r in stream.take_results(10)] == [3, 4, 5]
    assert stream.exhausted()
