"""Pure pieces of the core: task messages, settings, key order, commit bounds."""

from __future__ import annotations

import pytest

from mapper.datastore.keys import key_bytes, key_order
from mapper.datastore.rpc import Entity, bounded_batches
from mapper.dispatch.messages import SliceTask, task_from_json, task_to_json
from mapper.engine.spec import JobSpec
from mapper.engine.splitting import pick_split_points, split_ranges
from mapper.errors import ConfigurationError, InvalidJobError, PermanentSliceError
from mapper.settings import Settings
from tests.fixtures_alltypes import key


def make_key(*path):
    return key("", "", *path)


def test_slice_task_round_trips_through_json_with_a_valid_task_name():
    task = SliceTask("job-1", 2, 7, 1)
    assert task_from_json(task_to_json(task)) == task
    name = task.task_name()
    assert name.endswith("job-1-s2-7-g1")
    assert all(c.isalnum() or c in "-_" for c in name)


def test_malformed_task_bodies_are_refused():
    with pytest.raises(InvalidJobError, match="not JSON"):
        task_from_json(b"{")
    with pytest.raises(InvalidJobError, match="unknown task kind"):
        task_from_json(b'{"kind": "pickle"}')
    with pytest.raises(InvalidJobError):
        task_from_json(b'{"kind": "slice", "job_id": "a b", "shard": 0, "slice": 0}')


def test_job_spec_names_the_bad_field():
    with pytest.raises(InvalidJobError, match="batch_size"):
        JobSpec(mapper="m:C", batch_size=501).validate()
    with pytest.raises(InvalidJobError, match="module:Class"):
        JobSpec(mapper="not a spec").validate()
    with pytest.raises(InvalidJobError, match="JSON-serialisable"):
        JobSpec(mapper="m:C", params={"x": object()}).validate()
    with pytest.raises(InvalidJobError, match="unknown job spec field"):
        JobSpec.from_dict({"mapper": "m:C", "shard": 2})


def test_settings_refuse_missing_project_and_bad_queue():
    with pytest.raises(ConfigurationError, match="GOOGLE_CLOUD_PROJECT"):
        Settings.from_env({})
    with pytest.raises(ConfigurationError, match="MAPPER_QUEUE"):
        Settings.from_env({"GOOGLE_CLOUD_PROJECT": "p", "MAPPER_QUEUE": "q"})
    with pytest.raises(ConfigurationError, match="refused on App Engine"):
        Settings.from_env(
            {"GOOGLE_CLOUD_PROJECT": "p", "MAPPER_AUTH": "off", "GAE_ENV": "standard"}
        )


def test_key_order_puts_ids_before_names_and_parents_before_children():
    keys = [make_key("A", "b"), make_key("A", 10, "B", 1), make_key("A", 2), make_key("A", 10)]
    ordered = sorted(keys, key=key_order)
    assert ordered == [keys[2], keys[3], keys[1], keys[0]]


def test_split_points_are_distinct_and_evenly_spaced():
    samples = [make_key("A", i) for i in range(1, 101)] * 2
    points = pick_split_points(samples, 4)
    assert [p.path[0].id for p in points] == [26, 51, 76]
    assert pick_split_points([make_key("A", 1)], 4) == []


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


def test_one_split_key_given_by_the_mapper_makes_two_ranges():
    """Finding 12: ``import --shards 2`` got one split key, and ran on one shard."""
    ranges, how = split_ranges(None, "A", "", 2, [make_key("A", 7)])  # type: ignore[arg-type]
    assert len(ranges) == 2 and ranges[0][1] == ranges[1][0] == key_bytes(make_key("A", 7))
    ranges, _ = split_ranges(None, "A", "", 3, [make_key("A", i) for i in (9, 3, 3)])
    assert [r[1] for r in ranges[:-1]] == [key_bytes(make_key("A", i)) for i in (3, 9)]
    ranges, _ = split_ranges(None, "A", "", 2, [make_key("A", i) for i in range(1, 10)])
    assert len(ranges) == 2
