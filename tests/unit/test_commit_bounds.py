"""Commit bounds: mutations per commit by count and by bytes."""

from __future__ import annotations

import pytest

from mapper.datastore.rpc import Entity, bounded_batches
from mapper.errors import PermanentSliceError
from tests.support.fixtures_alltypes import key


def make_key(*path):
    return key("", "", *path)


def test_bounded_batches_respect_count_and_bytes():
    def entity(size):
        e = Entity()
        e.key.CopyFrom(make_key("A", 1))
        e.properties["b"].blob_value = b"x" * size
        return e

    batches = list(bounded_batches([entity(100_000)] * 60, [], max_bytes=1_000_000))
    assert all(sum(e.ByteSize() for e in puts) <= 1_000_000 for puts, _ in batches)
    assert sum(len(puts) for puts, _ in batches) == 60
    keys = [make_key("A", i) for i in range(1, 1201)]
    assert [len(d) for _, d in bounded_batches([], keys)] == [500, 500, 200]
    with pytest.raises(PermanentSliceError):
        list(bounded_batches([entity(1_100_000)], []))
